"""Cutout fetchers for GALEX, Pan-STARRS1 and unWISE, their shared client and cache."""

from mantis.fetch._base import CutoutFetcher, PlannedRequest, Product, SkyObject, cutout_pixels
from mantis.fetch._cache import CutoutCache, object_shard
from mantis.fetch._client import ClientSettings, HttpClient, RequestFailedError
from mantis.fetch._galex import GalexFetcher
from mantis.fetch._panstarrs import PanStarrsFetcher
from mantis.fetch._runner import (
    FETCHERS,
    FetchSummary,
    fetch_catalog,
    load_fetch_config,
    make_fetchers,
)
from mantis.fetch._session import FetchSession
from mantis.fetch._unwise import UnwiseFetcher

__all__ = [
    "FETCHERS",
    "ClientSettings",
    "CutoutCache",
    "CutoutFetcher",
    "FetchSession",
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
    "load_fetch_config",
    "make_fetchers",
    "object_shard",
]
