"""SearchImageSets end to end, with boto3/botocore as the client.

Expected results are computed here from the data file with plain Python (filter,
sort by the field then imageSetId), never taken from the emulator.
"""

import collections
import math
import unittest

from .helpers import DATASTORE, OTHER_DATASTORE
from .server_fixture import DemoServer

SERVER = DemoServer()


def setUpModule():
    SERVER.start()


def tearDownModule():
    SERVER.stop()


def _study_key(tags):
    """(date digits, time digits) as sortable text, or None without a study date."""
    date = "".join(c for c in tags.get("DICOMStudyDate", "") if c.isdigit())
    if len(date) != 8:
        return None
    hms, _, frac = tags.get("DICOMStudyTime", "").replace(":", "").partition(".")
    return date + hms.ljust(6, "0") + frac.ljust(6, "0")


def expected_ids(sets, field="updatedAt", order="DESC"):
    by_id = sorted(sets, key=lambda s: s["imageSetId"])
    if field == "DICOMStudyDateAndTime":
        dated = [s for s in by_id if _study_key(s["DICOMTags"]) is not None]
        undated = [s for s in by_id if _study_key(s["DICOMTags"]) is None]
        dated.sort(key=lambda s: _study_key(s["DICOMTags"]), reverse=order == "DESC")
        return [s["imageSetId"] for s in dated + undated]
    return [s["imageSetId"] for s in sorted(by_id, key=lambda s: s[field], reverse=order == "DESC")]


class BotocoreSearchTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.client = SERVER.client()
        cls.loose = SERVER.client(validate=False)
        cls.sets = SERVER.doc["imageSets"]

    def collect(self, page_size=None, **kwargs):
        """All pages through the boto3 paginator: (ids, pages)."""
        paginator = self.client.get_paginator("search_image_sets")
        config = {"PageSize": page_size} if page_size else {}
        pages = list(paginator.paginate(datastoreId=DATASTORE, PaginationConfig=config, **kwargs))
        ids = [s["imageSetId"] for p in pages for s in p["imageSetsMetadataSummaries"]]
        return ids, pages

    def search_ids(self, criteria):
        ids, _ = self.collect(page_size=50, searchCriteria=criteria)
        return ids

    def matching(self, predicate):
        return sorted(s["imageSetId"] for s in self.sets if predicate(s))

    # {==== Paging and sorting ------------------------------------------------

    def test_without_criteria_pages_cover_everything_newest_update_first(self):
        ids, pages = self.collect(page_size=7)
        self.assertEqual(ids, expected_ids(self.sets))
        self.assertEqual(len(pages), math.ceil(len(self.sets) / 7))
        for page in pages[:-1]:
            self.assertEqual(len(page["imageSetsMetadataSummaries"]), 7)
            self.assertIn("nextToken", page)
        self.assertNotIn("nextToken", pages[-1])
        for page in pages:
            self.assertNotIn("sort", page)

    def test_default_page_holds_up_to_50(self):
        resp = self.client.search_image_sets(datastoreId=DATASTORE)
        self.assertEqual(len(resp["imageSetsMetadataSummaries"]), min(50, len(self.sets)))
        self.assertEqual("nextToken" in resp, len(self.sets) > 50)

    def test_every_sort_field_and_order_with_ties_broken_by_id(self):
        for field in ("updatedAt", "createdAt", "DICOMStudyDateAndTime"):
            for order in ("ASC", "DESC"):
                with self.subTest(field=field, order=order):
                    ids, pages = self.collect(page_size=10, searchCriteria={
                        "sort": {"sortField": field, "sortOrder": order}})
                    self.assertEqual(ids, expected_ids(self.sets, field, order))
                    for page in pages:
                        self.assertEqual(page["sort"], {"sortField": field, "sortOrder": order})
        ties = collections.Counter(s["createdAt"] for s in self.sets)
        self.assertTrue(any(n > 1 for n in ties.values()), "the data has ties to break")

    def test_a_page_size_of_one_walks_every_image_set_once(self):
        ids, pages = self.collect(page_size=1)
        self.assertEqual(len(pages), len(self.sets))
        self.assertEqual(ids, expected_ids(self.sets))

    # }====

    # {==== Filters -------------------------------------------------------------

    def test_equal_on_each_string_member(self):
        for member in ("DICOMPatientId", "DICOMAccessionNumber", "DICOMStudyId",
                       "DICOMStudyInstanceUID", "DICOMSeriesInstanceUID"):
            counts = collections.Counter(s["DICOMTags"][member] for s in self.sets if member in s["DICOMTags"])
            value = counts.most_common(1)[0][0]
            with self.subTest(member=member, matches=counts[value]):
                got = self.search_ids({"filters": [{"operator": "EQUAL", "values": [{member: value}]}]})
                self.assertEqual(sorted(got), self.matching(lambda s: s["DICOMTags"].get(member) == value))
        none = self.search_ids({"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": "no-such-id"}]}]})
        self.assertEqual(none, [])

    def test_equal_on_is_primary(self):
        for flag in (True, False):
            with self.subTest(isPrimary=flag):
                got = self.search_ids({"filters": [{"operator": "EQUAL", "values": [{"isPrimary": flag}]}]})
                self.assertEqual(sorted(got), self.matching(lambda s: s["isPrimary"] is flag))
                self.assertGreater(len(got), 0)

    def test_between_created_at_and_updated_at(self):
        import datetime
        for member in ("createdAt", "updatedAt"):
            values = sorted(s[member] for s in self.sets)
            low, high = math.floor(values[5]), math.floor(values[-10])
            with self.subTest(member=member):
                got = self.search_ids({"filters": [{"operator": "BETWEEN", "values": [
                    {member: datetime.datetime.fromtimestamp(low, datetime.timezone.utc)},
                    {member: datetime.datetime.fromtimestamp(high, datetime.timezone.utc)}]}]})
                self.assertEqual(sorted(got), self.matching(lambda s: low <= s[member] <= high))
                self.assertGreater(len(got), 0)

    def test_between_study_dates_without_time_covers_whole_days(self):
        got = self.search_ids({"filters": [{"operator": "BETWEEN", "values": [
            {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20040826"}},
            {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20040826"}}]}]})
        expected = self.matching(lambda s: (_study_key(s["DICOMTags"]) or "").startswith("20040826"))
        self.assertEqual(sorted(got), expected)
        self.assertGreater(len(expected), 1)
        wide = self.search_ids({"filters": [{"operator": "BETWEEN", "values": [
            {"DICOMStudyDateAndTime": {"DICOMStudyDate": "19970101"}},
            {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20151231"}}]}]})
        self.assertEqual(sorted(wide), self.matching(
            lambda s: "19970101" <= (_study_key(s["DICOMTags"]) or "0")[:8] <= "20151231"))

    def test_between_study_date_and_time_with_times(self):
        def between(lo, hi):
            return self.search_ids({"filters": [{"operator": "BETWEEN", "values": [
                {"DICOMStudyDateAndTime": lo}, {"DICOMStudyDateAndTime": hi}]}]})
        exact = between({"DICOMStudyDate": "20040826", "DICOMStudyTime": "185059"},
                        {"DICOMStudyDate": "20040826", "DICOMStudyTime": "185059"})
        self.assertEqual(sorted(exact), self.matching(
            lambda s: _study_key(s["DICOMTags"]) == "20040826185059000000"))
        before = between({"DICOMStudyDate": "20040826", "DICOMStudyTime": "000000"},
                         {"DICOMStudyDate": "20040826", "DICOMStudyTime": "185058.999999"})
        self.assertEqual(before, [])

    def test_two_filters_are_anded(self):
        study = collections.Counter(s["DICOMTags"].get("DICOMStudyInstanceUID") for s in self.sets
                                    ).most_common(1)[0][0]
        cut = sorted(s["updatedAt"] for s in self.sets)[len(self.sets) // 2]
        import datetime
        got = self.search_ids({"filters": [
            {"operator": "EQUAL", "values": [{"DICOMStudyInstanceUID": study}]},
            {"operator": "BETWEEN", "values": [
                {"updatedAt": datetime.datetime.fromtimestamp(0, datetime.timezone.utc)},
                {"updatedAt": datetime.datetime.fromtimestamp(math.floor(cut), datetime.timezone.utc)}]}]})
        self.assertEqual(sorted(got), self.matching(
            lambda s: s["DICOMTags"].get("DICOMStudyInstanceUID") == study and s["updatedAt"] <= math.floor(cut)))

    def test_filter_sort_and_paging_together(self):
        criteria = {"filters": [{"operator": "EQUAL", "values": [{"isPrimary": True}]}],
                    "sort": {"sortField": "createdAt", "sortOrder": "ASC"}}
        ids, pages = self.collect(page_size=4, searchCriteria=criteria)
        self.assertEqual(ids, expected_ids([s for s in self.sets if s["isPrimary"]], "createdAt", "ASC"))
        self.assertGreater(len(pages), 2)

    # }====

    # {==== Content ------------------------------------------------------------

    def test_summaries_carry_every_field_with_fractions_and_unicode(self):
        by_id = {s["imageSetId"]: s for s in self.sets}
        resp = self.client.search_image_sets(datastoreId=DATASTORE, maxResults=50)
        for item in resp["imageSetsMetadataSummaries"]:
            mine = by_id[item["imageSetId"]]
            self.assertEqual(item["createdAt"].timestamp(), mine["createdAt"])
            self.assertEqual(item["updatedAt"].timestamp(), mine["updatedAt"])
            self.assertEqual(item["DICOMTags"], mine["DICOMTags"])
            self.assertEqual((item["version"], item["isPrimary"], item["storageTier"]),
                             (mine["version"], mine["isPrimary"], mine["storageTier"]))
        names = [i["DICOMTags"].get("DICOMPatientName", "") for i in resp["imageSetsMetadataSummaries"]]
        self.assertTrue(any("\uae40" in n for n in names), "the Korean name arrives decoded")

    # }====

    # {==== Errors ---------------------------------------------------------------

    def assert_error(self, code, status, call, *fragments):
        from botocore.exceptions import ClientError
        with self.assertRaises(ClientError) as ctx:
            call()
        err = ctx.exception.response
        self.assertEqual(err["Error"]["Code"], code)
        self.assertEqual(err["ResponseMetadata"]["HTTPStatusCode"], status)
        self.assertRegex(err["ResponseMetadata"]["RequestId"], r"^[0-9a-f-]{36}$")
        for fragment in fragments:
            self.assertIn(fragment, err["Error"]["Message"])
        return err["Error"]["Message"]

    def test_validation_errors_name_the_field_and_never_the_value(self):
        secret_value = "PATIENT-SECRET-VALUE"
        value = {"DICOMPatientId": secret_value}
        date = {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20040826"}}
        cases = [
            ({"maxResults": 0}, "maxResults"),
            ({"maxResults": 51}, "maxResults"),
            ({"searchCriteria": {"filters": []}}, "searchCriteria.filters"),
            ({"searchCriteria": {"filters": [{"operator": "EQUAL", "values": [value]}] * 3}}, "filters"),
            ({"searchCriteria": {"filters": [{"operator": "EQUAL", "values": [value, value, value]}]}},
             "filters[0].values"),
            ({"searchCriteria": {"filters": [{"operator": "EQUAL", "values": [value, value]}]}}, "EQUAL"),
            ({"searchCriteria": {"filters": [{"operator": "BETWEEN", "values": [date]}]}}, "BETWEEN"),
            ({"searchCriteria": {"filters": [{"operator": "BETWEEN", "values": [value, value]}]}},
             "DICOMPatientId"),
            ({"searchCriteria": {"filters": [{"operator": "BETWEEN", "values": [
                date, {"createdAt": 1}]}]}}, "same member"),
            ({"searchCriteria": {"filters": [{"operator": "EQUAL", "values": [{"createdAt": 1}]}]}},
             "createdAt"),
            ({"searchCriteria": {"filters": [{"operator": "LIKE", "values": [value]}]}}, "operator"),
            ({"searchCriteria": {"filters": [{"values": [value]}]}}, "operator"),
            ({"searchCriteria": {"filters": [{"operator": "EQUAL"}]}}, "values"),
            ({"searchCriteria": {"filters": [{"operator": "EQUAL", "values": [
                {"DICOMPatientId": secret_value, "DICOMStudyId": secret_value}]}]}}, "exactly one member"),
            ({"searchCriteria": {"filters": [{"operator": "EQUAL", "values": [{}]}]}}, "exactly one member"),
            ({"searchCriteria": {"filters": [{"operator": "EQUAL", "values": [
                {"DICOMStudyInstanceUID": "1.2.X" + secret_value}]}]}}, "DICOMStudyInstanceUID"),
            ({"searchCriteria": {"filters": [{"operator": "EQUAL", "values": [
                {"DICOMPatientId": secret_value * 30}]}]}}, "DICOMPatientId"),
            ({"searchCriteria": {"filters": [{"operator": "BETWEEN", "values": [
                {"DICOMStudyDateAndTime": {"DICOMStudyTime": "101010"}}] * 2}]}}, "DICOMStudyDate"),
            ({"searchCriteria": {"filters": [{"operator": "BETWEEN", "values": [
                {"DICOMStudyDateAndTime": {"DICOMStudyDate": "2004-08-26"}}] * 2}]}}, "DICOMStudyDate"),
            ({"searchCriteria": {"filters": [{"operator": "BETWEEN", "values": [
                {"createdAt": 2000000000}, {"createdAt": 1000000000}]}]}}, "lower bound"),
            ({"searchCriteria": {"sort": {"sortField": "createdAt"}}}, "sortOrder"),
            ({"searchCriteria": {"sort": {"sortOrder": "ASC"}}}, "sortField"),
            ({"searchCriteria": {"sort": {"sortField": "DICOMPatientId", "sortOrder": "ASC"}}}, "sortField"),
            ({"searchCriteria": {"sort": {"sortField": "createdAt", "sortOrder": "UP"}}}, "sortOrder"),
        ]
        for kwargs, fragment in cases:
            with self.subTest(fragment=fragment, kwargs=str(kwargs)[:120]):
                message = self.assert_error("ValidationException", 400,
                                            lambda: self.loose.search_image_sets(datastoreId=DATASTORE, **kwargs),
                                            fragment)
                self.assertNotIn(secret_value, message)

    def test_a_malformed_datastore_id_is_invalid_and_an_unknown_one_not_found(self):
        self.assert_error("ValidationException", 400,
                          lambda: self.loose.search_image_sets(datastoreId="not-a-datastore"), "datastoreId")
        self.assert_error("ResourceNotFoundException", 404,
                          lambda: self.client.search_image_sets(datastoreId=OTHER_DATASTORE))

    def test_a_token_from_other_criteria_is_refused(self):
        first = self.client.search_image_sets(datastoreId=DATASTORE, maxResults=5)
        self.assertRegex(first["nextToken"], r"[+/=]")
        self.assert_error("ValidationException", 400, lambda: self.client.search_image_sets(
            datastoreId=DATASTORE, maxResults=5, nextToken=first["nextToken"],
            searchCriteria={"sort": {"sortField": "createdAt", "sortOrder": "ASC"}}), "nextToken")
        again = self.client.search_image_sets(datastoreId=DATASTORE, maxResults=9, nextToken=first["nextToken"])
        self.assertEqual([s["imageSetId"] for s in again["imageSetsMetadataSummaries"]],
                         expected_ids(self.sets)[5:14])

    def test_each_fault_code_on_demand(self):
        statuses = {"ValidationException": 400, "AccessDeniedException": 403,
                    "ResourceNotFoundException": 404, "ConflictException": 409,
                    "ThrottlingException": 429, "InternalServerException": 500,
                    "InvalidSignatureException": 403, "UnrecognizedClientException": 403}
        emulator = SERVER.emulator
        for code, status in statuses.items():
            with self.subTest(code=code):
                self.assertEqual(emulator.control("POST", "/_local/faults", {"code": code, "times": 1})[0], 200)
                self.assert_error(code, status, lambda: self.client.search_image_sets(datastoreId=DATASTORE))
                self.client.search_image_sets(datastoreId=DATASTORE, maxResults=1)  # used up

    def test_fault_times_message_and_status(self):
        emulator = SERVER.emulator
        emulator.control("POST", "/_local/faults", {"code": "ThrottlingException", "times": 2,
                                                    "message": "slow down", "status": 400})
        for _ in range(2):
            self.assert_error("ThrottlingException", 400,
                              lambda: self.client.search_image_sets(datastoreId=DATASTORE), "slow down")
        self.client.search_image_sets(datastoreId=DATASTORE, maxResults=1)
        emulator.control("POST", "/_local/faults", {"code": "ConflictException", "times": 5})
        self.assertEqual(emulator.control("DELETE", "/_local/faults"), (200, {"cleared": 1}))
        self.client.search_image_sets(datastoreId=DATASTORE, maxResults=1)

    # }====


if __name__ == "__main__":
    unittest.main()
