"""Cutout fetchers for GALEX, Pan-STARRS1 and unWISE, their shared client and cache."""

from mantis.fetch.base import CutoutFetcher, PlannedRequest, Product, SkyObject, cutout_pixels
from mantis.fetch.cache import CutoutCache, object_shard
from mantis.fetch.client import ClientSettings, HttpClient, RequestFailedError
from mantis.fetch.galex import GalexFetcher
from mantis.fetch.panstarrs import PanStarrsFetcher
from mantis.fetch.runner import FETCHERS, FetchSummary, fetch_catalog, make_fetchers
from mantis.fetch.unwise import UnwiseFetcher

__all__ = [
    "FETCHERS",
    "ClientSettings",
    "CutoutCache",
    "CutoutFetcher",
    "FetchSummary",
    "GalexFetcher",
    "HttpClient",
    "PanStarrsFetcher",
    "PlannedRequest",
    "Product",
    "RequestFailedError",
    "SkyObject",
    "UnwiseFetcher",
    "cutout_pixels",
    "fetch_catalog",
    "make_fetchers",
    "object_shard",
]
