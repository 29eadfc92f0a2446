"""The FastAPI application of ``mantis serve``: prediction, jobs, cone search and the page."""

from __future__ import annotations

import asyncio
import json
import math
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from mantis.exceptions import MantisError
from mantis.serve._batcher import Batcher
from mantis.serve._cone import ConeIndex, cone_votable
from mantis.serve._engine import PredictionEngine
from mantis.serve._jobs import RESULT_FORMATS, JobStore
from mantis.serve._run import is_loopback
from mantis.serve._settings import RateLimiter, ServeSettings

__all__ = ["create_app"]

UPLOAD_SUFFIXES = (".csv", ".parquet", ".pq", ".fits", ".fit", ".vot", ".votable", ".xml")
TABLE_PAGE_MAX = 1000


class ApiError(Exception):
    """An answer with a status and a one-line message naming the bad value."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class Position(BaseModel):
    """One object to predict."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    id: Annotated[str | None, Field(max_length=128, description="your identifier")] = None
    ra: Annotated[float, Field(ge=0.0, lt=360.0, description="right ascension, degrees ICRS")]
    dec: Annotated[float, Field(ge=-90.0, le=90.0, description="declination, degrees ICRS")]


class PredictRequest(BaseModel):
    """Positions to predict (at most the service's ``max_positions``)."""

    model_config = ConfigDict(extra="forbid")
    positions: list[Position]


def _finite(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _records(table: pd.DataFrame, probs: np.ndarray | None) -> list[dict[str, Any]]:
    names = [c for c in table.columns if c != "density"]
    rows = []
    for i, values in enumerate(table[names].itertuples(index=False, name=None)):
        row = {name: _finite(v) for name, v in zip(names, values, strict=True)}
        if probs is not None:
            p = probs[i]
            row["density"] = np.round(p, 8).tolist() if np.isfinite(p).all() else None
        rows.append(row)
    return rows


def _grid(engine: PredictionEngine) -> dict[str, Any]:
    zgrid = engine.zgrid
    return {"z_min": zgrid.z_min, "z_max": zgrid.z_max, "n_bins": zgrid.n_bins,
            "meaning": "density[k] is the probability of bin k; bins split [z_min, z_max] "
                       "evenly; rows sum to one"}  # fmt: skip


def _validation_message(err: RequestValidationError) -> tuple[str, list[dict]]:
    details = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p != "body")
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            message = f"unknown field {loc!r}; allowed: id, ra, dec (and positions at the top)"
        else:
            message = f"{loc} = {json.dumps(value, default=str)[:80]}: {e['msg']}"
        details.append({"location": loc, "value": _finite(value), "message": message})
    return "; ".join(d["message"] for d in details[:5]), details


def create_app(
    engine: PredictionEngine,
    settings: ServeSettings | None = None,
    *,
    host: str = "127.0.0.1",
    cone_catalog: str | Path | None = None,
) -> FastAPI:
    """Build the application around a loaded `PredictionEngine`.

    Parameters
    ----------
    engine : PredictionEngine
        The prediction code of ``mantis predict`` with a loaded checkpoint.
    settings : ServeSettings, optional
        Limits and the state folder.
    host : str
        Address the server binds (reported by ``GET /v1``).
    cone_catalog : path-like, optional
        A prediction file whose objects the cone search serves from the start.

    Returns
    -------
    fastapi.FastAPI
    """
    settings = settings or ServeSettings()
    state = Path(settings.state_dir)
    (state / "scratch").mkdir(parents=True, exist_ok=True)
    cone = ConeIndex(state / "cone.sqlite")
    jobs = JobStore(state / "jobs", engine, cone)
    limiter = RateLimiter(settings.rate_per_s, settings.burst)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if cone_catalog is not None:
            from mantis.predict import read_predictions

            table, _, _ = read_predictions(cone_catalog)
            cone.add(table, origin=f"file:{Path(cone_catalog).name}")
        app.state.batcher = Batcher(engine, state / "scratch", settings.batch_objects)
        app.state.resumed = jobs.start()
        try:
            yield
        finally:
            app.state.batcher.close()
            jobs.close()

    app = FastAPI(
        title="mantis",
        summary="Photometric-redshift densities from GALEX, Pan-STARRS1 and unWISE images",
        version="1",
        lifespan=lifespan,
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        headers = err.extra.pop("headers", None)
        return JSONResponse({"error": err.message, **err.extra}, err.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        message, details = _validation_message(err)
        return JSONResponse({"error": message, "details": details}, 422)

    @app.exception_handler(MantisError)
    async def _failed(request: Request, err: MantisError) -> JSONResponse:
        # e.g. the survey services could not be reached for a /v1/predict batch
        return JSONResponse({"error": f"prediction failed: {err}"}, 502)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException) -> JSONResponse:
        message = err.detail if err.status_code != 404 else f"no such path {request.url.path!r}"
        return JSONResponse({"error": message}, err.status_code)

    @app.middleware("http")
    async def _limits(request: Request, call_next):
        if request.url.path.startswith("/v1"):
            client = request.client.host if request.client else "unknown"
            wait = limiter.retry_after(client)
            if wait > 0:
                return JSONResponse(
                    {"error": f"more than {settings.rate_per_s:g} requests/s from {client}; "
                              f"retry after {wait:.2f} s"},
                    429, headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )  # fmt: skip
        if request.method == "POST":
            upload = request.url.path == "/v1/jobs"
            cap = settings.max_upload_bytes if upload else settings.max_request_bytes
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"error": "a Content-Length header is required"}, 411)
            if not length.isdigit() or int(length) > cap:
                return JSONResponse(
                    {"error": f"request body of {length} bytes is over the limit of {cap} bytes",
                     "limit_bytes": cap}, 413)  # fmt: skip
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("mantis.serve").joinpath("static/index.html").read_text()

    @app.get("/v1", summary="What this service is and allows")
    def info() -> dict[str, Any]:
        return {
            "service": "mantis",
            "zgrid": _grid(engine),
            "calibrated": engine.calibrated,
            "bind": host,
            "loopback_only": is_loopback(host),
            "limits": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in settings.__dict__.items()
                if k != "state_dir"
            },
            "cone_objects": cone.count(),
        }

    @app.post("/v1/predict", summary="Densities for up to max_positions positions")
    async def predict(body: PredictRequest) -> JSONResponse:
        n = len(body.positions)
        if n == 0:
            raise ApiError(422, "positions is empty; give at least one {ra, dec}")
        if n > settings.max_positions:
            raise ApiError(413, f"{n} positions is over the limit of {settings.max_positions} "
                                "per request; split them or submit a job (POST /v1/jobs)",
                           limit=settings.max_positions)  # fmt: skip
        frame = pd.DataFrame([p.model_dump() for p in body.positions])
        from mantis.serve._engine import position_ids

        names = position_ids(frame["ra"], frame["dec"])
        given = [p.id for p in body.positions]
        frame["id"] = [i if i is not None else n for i, n in zip(given, names, strict=True)]
        table, probs = await asyncio.wrap_future(app.state.batcher.submit(frame))
        await asyncio.to_thread(cone.add, table, "predict")

        def answer() -> bytes:
            content = {"zgrid": _grid(engine), "calibrated": engine.calibrated,
                       "objects": _records(table, probs)}  # fmt: skip
            return json.dumps(content, allow_nan=False).encode()

        return Response(await asyncio.to_thread(answer), media_type="application/json")

    @app.post("/v1/jobs", status_code=202, summary="Upload a catalogue for an asynchronous job")
    async def submit(request: Request) -> JSONResponse:
        job_id, folder = jobs.new_folder()
        try:
            upload, name = await _receive_upload(request, folder, settings.max_upload_bytes)
            catalog = await asyncio.to_thread(_read_upload, upload, name, settings)
            await asyncio.to_thread(jobs.submit, job_id, folder, catalog, name)
        except BaseException:
            jobs.discard(folder)
            raise
        return JSONResponse(jobs.state(job_id), 202, headers={"Location": f"/v1/jobs/{job_id}"})

    def _job_folder(job_id: str) -> Path:
        folder = jobs.folder(job_id)
        if folder is None:
            raise ApiError(404, f"no job {job_id!r}")
        return folder

    def _completed(job_id: str) -> Path:
        folder = _job_folder(job_id)
        phase = jobs.state(job_id)["phase"]
        if phase != "COMPLETED":
            raise ApiError(409, f"job {job_id} is {phase}, not COMPLETED", phase=phase)
        return folder

    @app.get("/v1/jobs", summary="Every job")
    def list_jobs() -> list[dict[str, Any]]:
        return sorted(jobs.list(), key=lambda j: j["creationTime"])

    @app.get("/v1/jobs/{job_id}", summary="Phase (UWS names), progress, errors and results")
    def job(job_id: str) -> dict[str, Any]:
        _job_folder(job_id)
        state = jobs.state(job_id)
        if state["phase"] == "COMPLETED":
            state["results"] = [{"id": f, "href": f"/v1/jobs/{job_id}/results/{f}"}
                                for f in RESULT_FORMATS]  # fmt: skip
        return state

    @app.get("/v1/jobs/{job_id}/results/{fmt}", summary="Download the results")
    def result(job_id: str, fmt: str) -> FileResponse:
        if fmt not in RESULT_FORMATS:
            raise ApiError(404, f"no result format {fmt!r}; allowed: {', '.join(RESULT_FORMATS)}")
        _completed(job_id)
        try:
            path = jobs.result(job_id, fmt)
        except MantisError as err:
            raise ApiError(409, str(err)) from None
        _, suffix, media = RESULT_FORMATS[fmt]
        return FileResponse(path, media_type=media, filename=f"mantis-{job_id[:8]}{suffix}")

    @app.get("/v1/jobs/{job_id}/rows", summary="A page of result rows, without densities")
    def rows(
        job_id: str,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=TABLE_PAGE_MAX)] = 100,
    ) -> dict[str, Any]:
        folder = _completed(job_id)
        table = _result_table(folder).slice(offset, limit)
        frame = table.drop_columns(["density"]).to_pandas()
        return {"offset": offset, "total": _result_table(folder).num_rows,
                "rows": _records(frame, None)}  # fmt: skip

    def _object(job_id: str, row: int) -> tuple[dict[str, Any], np.ndarray | None]:
        folder = _completed(job_id)
        table = _result_table(folder)
        if not 0 <= row < table.num_rows:
            raise ApiError(404, f"row {row} is outside 0..{table.num_rows - 1}")
        one = table.slice(row, 1)
        density = one.column("density")[0].as_py()
        record = _records(one.drop_columns(["density"]).to_pandas(), None)[0]
        return record, (np.asarray(density, dtype=float) if density else None)

    @app.get("/v1/jobs/{job_id}/objects/{row}", summary="One object with its density")
    def one_object(job_id: str, row: int) -> dict[str, Any]:
        record, density = _object(job_id, row)
        record["density"] = None if density is None else np.round(density, 8).tolist()
        record["zgrid"] = _grid(engine)
        return record

    @app.get("/v1/jobs/{job_id}/objects/{row}/pz.png", summary="p(z) plot with intervals")
    def pz_plot(job_id: str, row: int) -> Response:
        from mantis.serve._plots import pz_png

        record, density = _object(job_id, row)
        if density is None:
            raise ApiError(409, f"row {row} has no density: {record.get('flag') or 'invalid'}")
        return Response(pz_png(density, engine.zgrid, record), media_type="image/png")

    @app.get("/v1/jobs/{job_id}/objects/{row}/cutouts.png", summary="The nine-band cutouts")
    def cutouts_plot(job_id: str, row: int) -> Response:
        from mantis.serve._plots import cutouts_png

        record, density = _object(job_id, row)
        if density is None:
            raise ApiError(409, f"row {row} has no cutouts: {record.get('flag') or 'invalid'}")
        arrays = engine.cutouts(record["ra"], record["dec"])
        return Response(cutouts_png(arrays, str(record["id"])), media_type="image/png")

    @app.get("/v1/cone", summary="IVOA Simple Cone Search over the predicted objects")
    def cone_search(request: Request) -> Response:
        query = {}
        for name, lo, hi in (("RA", 0.0, 360.0), ("DEC", -90.0, 90.0),
                             ("SR", 0.0, settings.max_radius_deg)):  # fmt: skip
            text = request.query_params.get(name)
            if text is None:
                raise ApiError(400, f"{name} is missing; a cone search needs RA, DEC and SR "
                                    "in degrees")  # fmt: skip
            try:
                value = float(text)
            except ValueError:
                raise ApiError(400, f"{name}={text[:40]!r} is not a number") from None
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ApiError(400, f"{name}={text[:40]} is outside [{lo:g}, {hi:g}] degrees",
                               limit=[lo, hi])  # fmt: skip
            query[name] = value
        found, overflow = cone.search(query["RA"], query["DEC"], query["SR"],
                                      settings.max_cone_rows)  # fmt: skip
        body = cone_votable(found, overflow, query)
        return Response(body, media_type="text/xml")

    return app


def _result_table(folder: Path):
    import pyarrow.parquet as pq

    return pq.read_table(folder / "result.parquet")


async def _receive_upload(request: Request, folder: Path, cap: int) -> tuple[Path, str]:
    """Stream a multipart upload's one file into ``folder``; return its path and given name."""
    from python_multipart import create_form_parser
    from python_multipart.exceptions import FormParserError

    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(415, f"upload as multipart/form-data with a 'file' field, not "
                            f"{content_type[:60]!r}")  # fmt: skip
    files: list = []
    config = {"UPLOAD_DIR": str(folder), "MAX_MEMORY_FILE_SIZE": 0, "UPLOAD_DELETE_TMP": False}
    try:
        parser = create_form_parser(dict(request.headers.items()) | {"Content-Type": content_type},
                                    lambda field: None, files.append, config=config)  # fmt: skip
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > cap:
                raise ApiError(413, f"upload is over the limit of {cap} bytes", limit_bytes=cap)
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError) as err:
        raise ApiError(400, f"malformed multipart upload: {err}") from None
    if len(files) != 1:
        raise ApiError(400, f"expected one file field, got {len(files)}")
    upload = files[0]
    name = (upload.file_name or b"").decode("utf-8", "replace")
    upload.file_object.close()
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise ApiError(415, f"file {name[:80]!r} has extension {suffix!r}; allowed: "
                            f"{', '.join(UPLOAD_SUFFIXES)}")  # fmt: skip
    path = folder / f"upload{suffix}"
    Path(upload.actual_file_name.decode()).replace(path)
    return path, Path(name).name


def _read_upload(path: Path, name: str, settings: ServeSettings) -> pd.DataFrame:
    from mantis.catalog import read_catalog

    try:
        catalog = read_catalog(path)
    except MantisError as err:
        raise ApiError(400, str(err).replace(str(path), name)) from None
    if catalog.empty:
        raise ApiError(400, f"catalogue {name!r} has no rows")
    if len(catalog) > settings.max_job_rows:
        limit = settings.max_job_rows
        message = f"catalogue {name!r} has {len(catalog)} rows, over the limit of {limit} per job"
        raise ApiError(413, message, limit=limit)
    return catalog
