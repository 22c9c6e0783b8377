"""The watch loop shared by `memorywatch watch` and the operator: scrape on an interval, judge, capture.

Errors: nothing escapes a target's loop except cancellation; scrape failures become `ScrapeFailed` events,
capture problems are recorded in the capture's manifest (`errors`), and a store that cannot be written at all
raises `memorywatch.store.StoreUnavailable` from the capture step, reported as a `CaptureFailed` event.
"""
