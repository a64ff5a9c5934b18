-- scripts/demo.lua: the library used from Lua, as `make demo` shows it:
-- every CT series sorted by study date, then every image set of one patient.
-- Usage: lua5.4 scripts/demo.lua ENDPOINT_URL DATASTORE_ID (credentials and
-- region from the environment). Patient ids are used, never printed.
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath

local hi = require "healthimaging"

local endpoint, datastore = arg[1], arg[2]
local client = assert(hi.client { endpoint_url = endpoint })
local paginator = client:get_paginator("search_image_sets")

print("-- every CT series, sorted by study date and time (ASC)")
local ct, patient = 0, nil
for s in paginator:paginate {
  datastoreId = datastore,
  searchCriteria = { sort = { sortField = "DICOMStudyDateAndTime", sortOrder = "ASC" } },
}:items() do
  local tags = s.DICOMTags or {}
  if tags.DICOMSeriesModality == "CT" then
    ct = ct + 1
    patient = patient or tags.DICOMPatientId
    print(string.format("%s  study date %-8s  series %s", s.imageSetId, tags.DICOMStudyDate or "-",
      tostring(tags.DICOMSeriesNumber or "-")))
  end
end
print(ct .. " CT series")

print()
print("-- every image set of the patient of the first CT series (EQUAL on DICOMPatientId)")
local res = assert(paginator:paginate {
  datastoreId = datastore,
  searchCriteria = { filters = { { operator = "EQUAL", values = { { DICOMPatientId = patient } } } } },
}:build_full_result())
for _, s in ipairs(res.imageSetsMetadataSummaries) do
  print(string.format("%s  %s  %d instances in the study", s.imageSetId, s.DICOMTags.DICOMSeriesModality or "-",
    s.DICOMTags.DICOMNumberOfStudyRelatedInstances or 0))
end
print(#res.imageSetsMetadataSummaries .. " image sets")
client:close()
