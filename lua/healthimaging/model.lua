-- healthimaging.model: the facts of the SearchImageSets operation.
-- Every constant here is transcribed from the service model of AWS
-- HealthImaging (botocore service-2.json, API version 2023-07-19, and its
-- paginators-1.json with the sdk-extras); the model file itself is not
-- shipped. Patterns are anchored, as the Smithy model writes them.

local _M = {}

-- Service metadata (service-2.json "metadata" and the operation's "http",
-- "endpoint" blocks).
_M.SERVICE = {
  signing_name = "medical-imaging",
  endpoint_prefix = "medical-imaging",
  api_version = "2023-07-19",
  host_prefix = "runtime-",
}

_M.OPERATION = {
  name = "SearchImageSets",
  method = "POST",
  path = "/datastore/{datastoreId}/searchImageSets",
}

-- Shapes reachable from SearchImageSetsRequest. A string's min/max count
-- characters (Smithy @length), its pattern is a Lua pattern equivalent to
-- the model's regular expression. Lists are 1-based sequences.
_M.SHAPES = {
  SearchImageSetsRequest = {
    type = "structure", required = { "datastoreId" },
    members = {
      datastoreId = "DatastoreId", searchCriteria = "SearchCriteria",
      maxResults = "MaxResults", nextToken = "NextToken",
    },
  },
  DatastoreId = { type = "string", pattern = "^[0-9a-z]+$", min = 32, max = 32,
                  rule = "must match ^[0-9a-z]{32}$" },
  MaxResults = { type = "integer", min = 1, max = 50 },
  NextToken = { type = "string", min = 1, max = 8192, ascii = true },
  SearchCriteria = {
    type = "structure",
    members = { filters = "SearchCriteriaFiltersList", sort = "Sort" },
  },
  SearchCriteriaFiltersList = { type = "list", member = "SearchFilter", min = 1, max = 2 },
  SearchFilter = {
    type = "structure", required = { "values", "operator" },
    members = { values = "SearchFilterValuesList", operator = "Operator" },
  },
  SearchFilterValuesList = { type = "list", member = "SearchByAttributeValue", min = 1, max = 2 },
  SearchByAttributeValue = {
    type = "union",
    members = {
      DICOMPatientId = "DICOMPatientId",
      DICOMAccessionNumber = "DICOMAccessionNumber",
      DICOMStudyId = "DICOMStudyId",
      DICOMStudyInstanceUID = "DICOMStudyInstanceUID",
      DICOMSeriesInstanceUID = "DICOMSeriesInstanceUID",
      createdAt = "Date",
      updatedAt = "Date",
      DICOMStudyDateAndTime = "DICOMStudyDateAndTime",
      isPrimary = "Boolean",
    },
  },
  DICOMPatientId = { type = "string", min = 0, max = 512 },
  DICOMAccessionNumber = { type = "string", min = 0, max = 512 },
  DICOMStudyId = { type = "string", min = 0, max = 512 },
  DICOMStudyInstanceUID = { type = "string", min = 0, max = 512, pattern = "^[0-9.]+$",
                            rule = "must match ^[0-9.]+$" },
  DICOMSeriesInstanceUID = { type = "string", min = 0, max = 512, pattern = "^[0-9.]+$",
                             rule = "must match ^[0-9.]+$" },
  DICOMStudyDateAndTime = {
    type = "structure", required = { "DICOMStudyDate" },
    members = { DICOMStudyDate = "DICOMStudyDate", DICOMStudyTime = "DICOMStudyTime" },
  },
  DICOMStudyDate = { type = "string", min = 0, max = 36 },
  DICOMStudyTime = { type = "string", min = 0, max = 56 },
  Date = { type = "timestamp" },
  Boolean = { type = "boolean" },
  Operator = { type = "string", enum = { "EQUAL", "BETWEEN" } },
  Sort = {
    type = "structure", required = { "sortOrder", "sortField" },
    members = { sortOrder = "SortOrder", sortField = "SortField" },
  },
  SortOrder = { type = "string", enum = { "ASC", "DESC" } },
  SortField = { type = "string", enum = { "updatedAt", "createdAt", "DICOMStudyDateAndTime" } },
}

-- Response members whose model type is integer (Integer, DICOMSeriesNumber,
-- DICOMNumberOfStudyRelated*): JSON numbers under these keys become Lua
-- integers; every other number (the Date timestamps) stays a float.
_M.INTEGER_KEYS = {
  version = true,
  DICOMSeriesNumber = true,
  DICOMNumberOfStudyRelatedSeries = true,
  DICOMNumberOfStudyRelatedInstances = true,
}

-- paginators-1.json + paginators-1.sdk-extras.json for SearchImageSets.
_M.PAGINATOR = {
  input_token = "nextToken",
  output_token = "nextToken",
  limit_key = "maxResults",
  result_key = "imageSetsMetadataSummaries",
  non_aggregate_keys = { "sort" },
}

-- The modeled errors of SearchImageSets and their HTTP status codes.
_M.ERRORS = {
  ValidationException = 400,
  AccessDeniedException = 403,
  ResourceNotFoundException = 404,
  ConflictException = 409,
  ThrottlingException = 429,
  InternalServerException = 500,
}

return _M
