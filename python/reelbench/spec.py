"""Experiment specs: a TOML file -> validated, path-resolved objects.

The format is documented in ``docs/spec.md``. Validation is strict: unknown
keys are errors (a typo must not be silently ignored), relative paths resolve
against the spec file's folder and must exist, item ids and variant keys are
unique. Every problem raises :class:`SpecError` naming the file, the key path
(``variants[1].params``) and what was expected.
"""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reelbench.errors import ReelbenchError
from reelbench.identity import seed_from_variant_key, spec_hash
from reelbench.providers.pricing import Price
from reelbench.video.canonical import CanonicalFormat

__all__ = [
    "BudgetSpec",
    "ExperimentInfo",
    "ExperimentSpec",
    "ItemSpec",
    "LimitSpec",
    "MetricsSettings",
    "RetryPolicy",
    "SpecError",
    "VariantSpec",
    "load_spec",
    "parse_scope",
    "parse_spec",
]

_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]*$"


class SpecError(ReelbenchError):
    """The spec (or a file it names) is invalid. The message says where and why."""

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid experiment spec {self.path}:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExperimentInfo(_Strict):
    """The ``[experiment]`` table."""

    name: str = Field(min_length=1, max_length=200, pattern=_KEY_PATTERN)
    description: str | None = None
    items_file: Path | None = None


class RetryPolicy(_Strict):
    """The ``[retry]`` table: how often and how patiently a failing run is retried."""

    max_attempts: int = Field(3, ge=1, le=100)
    backoff_seconds: float = Field(5.0, ge=0, le=86_400)
    backoff_max_seconds: float = Field(600.0, ge=0, le=7 * 86_400)
    #: A run whose worker died between a provider's submit and the record of
    #: its job id: ``fail`` (a job may exist and be billed; the run fails
    #: saying so) or ``resubmit``. Providers that take idempotency keys are
    #: always resubmitted safely.
    on_uncertain_submit: Literal["fail", "resubmit"] = "fail"

    def backoff(self, attempt: int, jitter: float = 0.5) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        ``backoff_seconds * 2**(attempt-1)``, capped at ``backoff_max_seconds``,
        then scaled by a factor in ``[1 - jitter/2, 1 + jitter/2]`` drawn by
        the caller (pass ``jitter`` = a uniform draw in [0, 1]).
        """
        exponent = min(max(0, attempt - 1), 60)
        base = min(self.backoff_max_seconds, self.backoff_seconds * float(2**exponent))
        return float(base * (0.75 + 0.5 * jitter))


#: The metric groups runs compute, in this order (see docs/metrics.md).
METRIC_GROUPS = ("frame", "temporal", "reference", "chroma", "motion")

_PLUGIN_NAME = r"^[a-z][a-z0-9_]{0,39}$"


class MetricsSettings(_Strict):
    """The ``[metrics]`` table: which metric groups and plugins every run computes."""

    groups: list[str] = Field(
        default_factory=lambda: ["frame", "temporal", "reference"],
        description="frame, temporal, reference (against the item's reference video), chroma "
        "(U, V and combined SSIM/PSNR against the reference; implies reference), motion "
        "(optical-flow motion, warp error, SI/TI, dynamic degree).",
    )
    #: Metric plugins by entry-point name (group ``reelbench.metrics``), in this order.
    plugins: list[str] = Field(default_factory=list)
    #: The motion group's ``dynamic_degree`` threshold, as a share of the short side.
    dynamic_threshold: float = Field(0.005, gt=0, le=1)

    @field_validator("groups")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [g for g in value if g not in METRIC_GROUPS]
        if unknown:
            raise ValueError(
                f"unknown metric group(s) {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(METRIC_GROUPS)}"
            )
        chosen = [
            g for g in METRIC_GROUPS if g in value or (g == "reference" and "chroma" in value)
        ]
        return chosen

    @field_validator("plugins")
    @classmethod
    def _plugin_names(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not re.match(_PLUGIN_NAME, p)]
        if bad:
            raise ValueError(
                f"plugin name(s) {', '.join(map(repr, bad))} are not entry-point names "
                "(lowercase letters, digits, '_')"
            )
        if len(set(value)) != len(value):
            raise ValueError("a plugin is named twice")
        return value


class ItemSpec(_Strict):
    """One ``[[items]]`` entry (or one line of the items file)."""

    id: str = Field(min_length=1, max_length=200, pattern=_KEY_PATTERN)
    prompt: str
    image: Path | None = None
    reference: Path | None = None
    #: Free-form labels carried into reports (e.g. {"category": "animals"}).
    meta: dict[str, Any] = Field(default_factory=dict)


class VariantSpec(_Strict):
    """One ``[[variants]]`` entry: a provider, a model and parameters."""

    key: str = Field(min_length=1, max_length=200, pattern=_KEY_PATTERN)
    provider: str = Field(min_length=1, max_length=100)
    model: str | None = Field(None, max_length=300)
    repeats: int = Field(1, ge=1, le=10_000)
    cache: bool = True
    params: dict[str, Any] = Field(default_factory=dict)

    def seed(self, item_id: str, repeat: int) -> int:
        """The seed of one run: ``params.seed`` if given, else derived from the keys."""
        explicit = self.params.get("seed")
        if explicit is not None:
            return int(explicit)
        return seed_from_variant_key(self.key, item_id, repeat)


class PriceSpec(_Strict):
    """A ``[[prices]]`` entry: overrides the built-in price table (providers/pricing.py)."""

    provider: str = Field(min_length=1, max_length=100)
    model: str | None = Field(None, max_length=300)
    usd_per_second: float = Field(ge=0, le=1_000)
    read_on: str = ""


_SCOPE = re.compile(r"^[A-Za-z0-9_.-]+(:\S+)?$")


def parse_scope(scope: str) -> str:
    """Check a limit scope, ``PROVIDER`` or ``PROVIDER:MODEL``; ``ValueError`` otherwise."""
    scope = scope.strip()
    if not _SCOPE.match(scope):
        raise ValueError(
            f"invalid limit scope {scope!r}: use PROVIDER or PROVIDER:MODEL "
            "(for example 'openai' or 'openai:sora-2')"
        )
    return scope


class LimitSpec(_Strict):
    """One ``[limits]`` entry: fleet-wide caps of a provider or ``provider:model``."""

    concurrency: int | None = Field(None, ge=1, le=100_000)
    per_minute: int | None = Field(None, ge=1, le=1_000_000)


class BudgetSpec(_Strict):
    """The ``[budget]`` table: the most the experiment may spend on provider calls."""

    max_usd: float | None = Field(None, ge=0, le=10_000_000)
    #: Seconds a run held back by the budget waits before it is looked at again.
    recheck_seconds: float = Field(60.0, gt=0, le=86_400)


class ExperimentSpec(_Strict):
    """A whole validated spec. ``items`` includes the items file's entries."""

    experiment: ExperimentInfo
    canonical: CanonicalFormat = Field(default_factory=CanonicalFormat)  # type: ignore[arg-type]
    retry: RetryPolicy = Field(default_factory=RetryPolicy)  # type: ignore[arg-type]
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)  # type: ignore[arg-type]
    items: list[ItemSpec] = Field(default_factory=list)
    variants: list[VariantSpec] = Field(min_length=1)
    prices: list[PriceSpec] = Field(default_factory=list)
    #: ``"provider"`` or ``"provider:model"`` -> fleet-wide caps.
    limits: dict[str, LimitSpec] = Field(default_factory=dict)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)  # type: ignore[arg-type]
    #: The spec file this was loaded from (None when built in code).
    source: Path | None = None

    @field_validator("limits")
    @classmethod
    def _scopes(cls, value: dict[str, LimitSpec]) -> dict[str, LimitSpec]:
        for scope, limit in value.items():
            parse_scope(scope)
            if limit.concurrency is None and limit.per_minute is None:
                raise ValueError(f"limits.{scope}: give concurrency, per_minute or both")
        return value

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self.experiment.name

    def price_table(self) -> tuple[Price, ...]:
        """The spec's ``[[prices]]`` as entries that override the built-in table."""
        return tuple(Price(p.provider, p.model, p.usd_per_second, p.read_on) for p in self.prices)

    def to_json(self) -> dict[str, Any]:
        """The spec as plain JSON (paths as strings), as stored with the experiment."""
        return self.model_dump(mode="json", exclude={"source"})

    def hash(self) -> str:
        """SHA-256 of the canonical JSON of the spec (resolved paths included)."""
        return spec_hash(self.to_json())

    def run_count(self) -> int:
        """Number of runs the grid defines: items x sum of repeats."""
        return len(self.items) * sum(v.repeats for v in self.variants)


def _loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(error: Any) -> str:
    loc = _loc(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (check the spelling; see docs/spec.md for the keys)"
    if kind == "missing":
        return f"{loc}: required key is missing"
    return f"{loc}: {error['msg']} (got {error.get('input')!r})"


def _validation_problems(exc: ValidationError, prefix: str = "") -> list[str]:
    return [prefix + _describe(err) for err in exc.errors()]


def _resolve(base: Path, path: Path | None) -> Path | None:
    if path is None:
        return None
    path = path.expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _read_items_file(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Raw item dicts from a .jsonl or .txt file, plus problems found."""
    if not path.is_file():
        return [], [f"experiment.items_file: file not found: {path}"]
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".txt":
        rows = [
            {"id": str(n), "prompt": line.strip(), "_line": n}
            for n, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
        return rows, []
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        return [], [
            f"experiment.items_file: {path.name}: expected a .jsonl (one JSON object per "
            "line) or .txt (one prompt per line) file"
        ]
    rows, problems = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{n}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{path}:{n}: expected a JSON object with id and prompt")
            continue
        row["_line"] = n
        rows.append(row)
    return rows, problems


def _validate_items(
    raw: list[Any], base: Path, where: str, problems: list[str], line_numbers: bool = False
) -> list[ItemSpec]:
    items = []
    for index, row in enumerate(raw):
        label = f"{where}:{row.pop('_line')}: " if line_numbers else ""
        loc = "" if line_numbers else f"items[{index}]."
        try:
            item = ItemSpec.model_validate(row)
        except ValidationError as exc:
            problems.extend(label + loc + _describe(err) for err in exc.errors())
            continue
        image = _resolve(base, item.image)
        reference = _resolve(base, item.reference)
        for key, path in (("image", image), ("reference", reference)):
            if path is not None and not path.is_file():
                problems.append(f"{label}{loc}{key}: file not found: {path}")
        items.append(item.model_copy(update={"image": image, "reference": reference}))
    return items


def _validate_providers(
    variants: list[VariantSpec], problems: list[str], base: Path
) -> list[VariantSpec]:
    """Ask the provider registry (if installed) whether each variant makes sense.

    Returns the variants with the params their providers pin (the content hash
    of a file the params name, say), so that identity follows the file.
    """
    try:
        providers = importlib.import_module("reelbench.providers")
    except ModuleNotFoundError as exc:
        if exc.name in ("reelbench.providers", "reelbench"):
            return variants
        raise
    validate = getattr(providers, "validate_variant", None)
    pin = getattr(providers, "pinned_params", None)
    if validate is None:
        return variants
    pinned = []
    for index, variant in enumerate(variants):
        try:
            validate(variant.provider, variant.model, dict(variant.params), workdir=str(base))
            if pin is not None:
                params = pin(variant.provider, variant.model, dict(variant.params), str(base))
                variant = variant.model_copy(update={"params": params})
        except Exception as exc:  # the registry's own error types vary by provider
            problems.append(f"variants[{index}] ({variant.key}, {variant.provider}): {exc}")
        pinned.append(variant)
    return pinned


def _validate_plugins(names: Sequence[str], problems: list[str]) -> None:
    """Every plugin a spec names is installed here (found, not imported: loading may be slow)."""
    if not names:
        return
    from reelbench.metric_plugins import ENTRY_POINT_GROUP, available_plugins

    installed = available_plugins()
    for index, name in enumerate(names):
        if name not in installed:
            problems.append(
                f"metrics.plugins[{index}]: no metric plugin {name!r} is installed "
                f"(installed: {', '.join(installed) or 'none'}); install the package that "
                f"provides it (a {ENTRY_POINT_GROUP!r} entry point) "
                "in the environment reelbench runs in"
            )


def parse_spec(data: dict[str, Any], *, source: Path | None = None) -> ExperimentSpec:
    """Validate a parsed spec document; relative paths resolve against ``source``'s folder."""
    where = str(source) if source else "<spec>"
    base = source.parent.resolve() if source else Path.cwd()
    problems: list[str] = []
    data = dict(data)
    if "source" in data:
        problems.append("source: unknown key (check the spelling; see docs/spec.md for the keys)")
        data.pop("source")
    raw_items = data.pop("items", [])
    if not isinstance(raw_items, list) or not all(isinstance(i, dict) for i in raw_items):
        problems.append("items: expected an array of tables ([[items]])")
        raw_items = []
    try:
        spec = ExperimentSpec.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems.extend(_validation_problems(exc))
        # Report item problems too, so one pass shows everything.
        _validate_items([dict(i) for i in raw_items], base, where, problems)
        raise SpecError(where, problems) from None

    items = _validate_items([dict(i) for i in raw_items], base, where, problems)
    items_file = _resolve(base, spec.experiment.items_file)
    if items_file is not None:
        rows, file_problems = _read_items_file(items_file)
        problems.extend(file_problems)
        items.extend(
            _validate_items(rows, items_file.parent, str(items_file), problems, line_numbers=True)
        )
    if not items and not problems:
        problems.append("items: no items: add [[items]] tables or set experiment.items_file")

    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in seen:
            problems.append(f"items: duplicate item id {item.id!r} (also item {seen[item.id]})")
        seen.setdefault(item.id, index)
    keys: dict[str, int] = {}
    for index, variant in enumerate(spec.variants):
        if variant.key in keys:
            problems.append(
                f"variants[{index}].key: duplicate variant key {variant.key!r} "
                f"(also variants[{keys[variant.key]}])"
            )
        keys.setdefault(variant.key, index)
        seed = variant.params.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            problems.append(
                f"variants[{index}].params.seed: expected a non-negative integer, got {seed!r}"
            )
    variants = _validate_providers(spec.variants, problems, base)
    _validate_plugins(spec.metrics.plugins, problems)
    if problems:
        raise SpecError(where, problems)
    experiment = spec.experiment.model_copy(update={"items_file": items_file})
    return spec.model_copy(update={"items": items, "experiment": experiment, "variants": variants})


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate the TOML spec at ``path``. Raises :class:`SpecError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(path, ["file not found"]) from None
    except OSError as exc:
        raise SpecError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpecError(path, ["not UTF-8 text; a spec is a TOML file"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(path, [f"not valid TOML: {exc}"]) from None
    return parse_spec(data, source=path.resolve())
