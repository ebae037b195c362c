"""The declarative spec of a reproduction: what world to render, what to train, what to measure and
what the paper claims.

An :class:`ExperimentSpec` holds

- the :class:`World`: the synthetic world's settings (any keyword of
  :class:`~pyfacex.data.synthetic.SyntheticFaceWorld` and its :class:`~pyfacex.data.synthetic.Nuisance`
  knobs, passed through as given, so new world options need no change here), the training set
  (identities × images per identity) and the benchmark protocols to write (:class:`Protocol`: a writer
  of :mod:`pyfacex.data.synthetic.protocols` and its arguments);
- the :class:`Evaluation` runs (a protocol with ``@`` options such as ``@16px`` / ``@blur9`` and a set
  function) and the :class:`Metric` columns read from them, in the paper table's column order;
- the base recipe (a :class:`pyfacex.train.Config` as a nested dict) and the :class:`Variant` rows (recipe
  overrides, in the paper table's row order, with the paper's number per metric);
- optional :class:`Stage` pre-trainings (a landmark network, a feature extractor) whose model file a
  recipe names with the string ``"$stage:NAME"``; ``"$train"`` names the rendered training set
  (``data.train`` is ``"$train"`` unless a recipe sets it);
- the seeds (full and ``--quick``), the quick-mode recipe overrides (fewer epochs), the
  :class:`Claim` rows, and whether to measure the world's shortcut floors (``floors``);
- the pilot (``pilot_worlds``, ``pilot_variant``): candidate worlds on which the baseline alone is run
  (``pyfacex reproduce PAPER --pilot``) to choose the world's difficulty before any method is trained,
  so that the choice cannot be tuned on a method's result.

Recipes merge like a recipe's ``base:`` (:mod:`pyfacex.train.config`): nested sections merge key by
key, a ``kwargs`` mapping is replaced whole. Every spec is checked when built: a malformed one raises
:class:`SpecError` naming the field, e.g. ``claims[1].baseline: 'gfe' is not a variant; variants: ...``.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SpecError", "Protocol", "World", "Evaluation", "Metric", "Variant", "Stage", "Claim", "ExperimentSpec",
           "TRAIN_TOKEN", "STAGE_TOKEN", "merge_recipes", "stage_references"]

TRAIN_TOKEN = "$train"
"""A recipe string replaced by the rendered training set's folder."""

STAGE_TOKEN = "$stage:"
"""Prefix of a recipe string ``"$stage:NAME"`` replaced by the model file of stage NAME (same seed)."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_NAME_TEXT = "letters, digits and _.+- (a file name)"
_EVALUATION = re.compile(r"[^=/\\\s]+")   # the name= of a protocol spec: no '=', path separator or space
_LABEL = re.compile(r"\S(.*\S)?")


class SpecError(ValueError):
    """A malformed :class:`ExperimentSpec`; the message starts with the field's path."""


@dataclass(frozen=True)
class Protocol:
    """A benchmark protocol to write: ``writer`` names a ``write_*`` function of
    :mod:`pyfacex.data.synthetic.protocols`, ``kwargs`` its arguments after the world and the folder
    (``seed`` included; ``progress`` is the runner's)."""

    writer: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class World:
    """The synthetic world of an experiment.

    Attributes:
        identities, per_identity: the training set, the first ``identities`` training identities ×
            ``per_identity`` images each.
        protocols: protocol folder name -> :class:`Protocol` (test identities, disjoint from training).
        seed: the world seed. size: render side in pixels (the recipe's ``data.image_size`` is what
            the models see). difficulty: :class:`~pyfacex.data.synthetic.Nuisance`'s global knob.
        nuisance: further Nuisance knobs (``blur=``, ``occlusion=``, ...).
        options: further :class:`~pyfacex.data.synthetic.SyntheticFaceWorld` keyword arguments.
        train_options: further :func:`~pyfacex.data.synthetic.export.write_training_set` keyword
            arguments (e.g. ``frames_per_video``).
    """

    identities: int
    per_identity: int
    protocols: Mapping[str, Protocol]
    seed: int = 0
    size: int = 112
    difficulty: float = 0.3
    nuisance: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    train_options: Mapping[str, Any] = field(default_factory=dict)

    def replaced(self, changes: Mapping[str, Any]) -> "World":
        """A copy with some fields changed; the mapping fields (``nuisance``, ``options``,
        ``train_options``, ``protocols``) are updated key by key rather than replaced.

        Raises:
            SpecError naming an unknown field.
        """
        known = {f.name for f in dataclasses.fields(self)}
        values = {}
        for key, value in changes.items():
            if key not in known:
                raise SpecError(f"{key}: not a World field; fields: {', '.join(sorted(known))}")
            current = getattr(self, key)
            values[key] = {**current, **value} if isinstance(current, Mapping) and isinstance(value, Mapping) \
                else value
        return dataclasses.replace(self, **values)

    def data_settings(self) -> dict:
        """The settings of :func:`pyfacex.data.synthetic.rendered_data.render_data` (a fresh copy)."""
        return copy.deepcopy({
            "world": {"seed": self.seed, "size": self.size, **self.options,
                      "nuisance": {"difficulty": self.difficulty, **self.nuisance}},
            "train": {"num_identities": self.identities, "per_identity": self.per_identity, **self.train_options},
            "protocols": {name: [p.writer, dict(p.kwargs)] for name, p in self.protocols.items()}})


@dataclass(frozen=True)
class Evaluation:
    """One evaluation run of every trained model.

    Attributes:
        name: the run's name (the metrics' source; ``lfw@16px``).
        protocol: a key of :attr:`World.protocols`.
        file: the file or folder inside the protocol's folder to evaluate ("" = the folder itself;
            e.g. ``"lfw.bin"``).
        options: ``@`` options of :func:`pyfacex.eval.evaluate_protocol` (``"@16px"``, ``"@blur9"``).
        set_function: ``"auto"``, ``"model"`` or ``"mean"`` (template and set protocols).
    """

    name: str
    protocol: str
    file: str = ""
    options: str = ""
    set_function: str = "auto"


@dataclass(frozen=True)
class Metric:
    """A column of the paper's table: ``key`` of the :class:`~pyfacex.eval.ProtocolResult` metrics of
    evaluation ``evaluation``, multiplied by ``scale`` (100: percent, the papers' unit);
    ``higher_is_better`` orients claims on it (False for EER, NME). With ``minus`` (another
    evaluation's name) the column is the difference ``(evaluation − minus)`` of that key, e.g. the drop
    of accuracy from clean to degraded test data (Face Aggregation Network, Tab. 1 vs Tab. 4)."""

    name: str
    evaluation: str
    key: str
    scale: float = 100.0
    higher_is_better: bool = True
    minus: str = ""


@dataclass(frozen=True)
class Variant:
    """A row of the paper's table: ``recipe`` overrides of the base recipe, ``paper`` the paper's
    number per metric name (in the metric's scaled unit; a metric the paper does not report is absent).
    ``stage`` (a stage's name) makes the row train nothing and evaluate that stage's model file as it
    is (then ``recipe`` must be empty), e.g. the pre-trained extractor's average pooling as the Face
    Aggregation Network's *avg* row."""

    name: str
    recipe: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, float] = field(default_factory=dict)
    note: str = ""
    stage: str = ""


@dataclass(frozen=True)
class Stage:
    """A network trained once per seed before the variants (a full recipe, not merged with the base
    one; ``data.train`` is the recipe's own, ``"$train"`` for the rendered set, empty for a trainer that
    renders its own data, e.g. the landmark one); ``quick`` overrides it in quick mode. Its model file
    is ``"$stage:<name>"`` in the variants' recipes."""

    name: str
    recipe: Mapping[str, Any]
    quick: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """The paper's claim that ``variant`` is better (``">"``) than, or not worse (``">="``, by more
    than ``margin`` in the metric's scaled unit) than ``baseline`` on ``metric``;
    :func:`pyfacex.reproduce.stats.verdict` decides it."""

    variant: str
    baseline: str
    metric: str
    direction: str = ">"
    margin: float = 0.0
    note: str = ""


def merge_recipes(*recipes: Mapping) -> dict:
    """The recipes merged left to right as a recipe's ``base:`` (sections key by key, ``kwargs`` whole);
    a fresh copy."""
    from ..train.config import merge_recipes as merge_two

    merged: dict = {}
    for recipe in recipes:
        merged = merge_two(merged, copy.deepcopy(dict(recipe)))
    return merged


def stage_references(value) -> set[str]:
    """The stage names a recipe (any nesting of dicts and lists) refers to with ``"$stage:NAME"``."""
    if isinstance(value, str):
        return {value[len(STAGE_TOKEN):]} if value.startswith(STAGE_TOKEN) else set()
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return set().union(*(stage_references(v) for v in value)) if value else set()
    return set()


@dataclass(frozen=True)
class ExperimentSpec:
    """A paper's experiment (module docstring); checked when built.

    Attributes:
        name: the spec's registry name (``lgaf``). paper: title and tables it reproduces.
        world, evaluations, metrics, recipe, variants, claims: see the module docstring.
        stages: pre-trainings. seeds: seeds of a full run (seeds 0 .. seeds-1). quick_seeds: of ``--quick``.
        quick: recipe overrides of ``--quick`` (fewer epochs), applied after the variant's.
        floors: also evaluate the world's shortcut floors (:mod:`pyfacex.eval.shortcuts`: mean-colour
            cells and an untrained network, per seed) as reference rows of the table.
        floor_network: keyword arguments of :func:`pyfacex.eval.shortcuts.untrained_network` besides
            ``seed`` and ``image_size`` (``layers``, ``widths``, ``embedding_size``; the base recipe's
            backbone is the natural choice); empty: its default tiny iResNet.
        description: what the spec sets up, why, and what was scaled down.
        pilot_worlds: candidate name -> :meth:`World.replaced` changes: the worlds of the pilot
            (:meth:`pilot_spec`), the spec's own ``world`` being the one chosen from it.
        pilot_variant: the variant the pilot trains (empty: the first variant, the baseline row).
    """

    name: str
    paper: str
    world: World
    evaluations: tuple[Evaluation, ...]
    metrics: tuple[Metric, ...]
    recipe: Mapping[str, Any]
    variants: tuple[Variant, ...]
    claims: tuple[Claim, ...] = ()
    stages: tuple[Stage, ...] = ()
    seeds: int = 3
    quick_seeds: int = 1
    quick: Mapping[str, Any] = field(default_factory=dict)
    floors: bool = True
    floor_network: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    pilot_worlds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pilot_variant: str = ""

    def __post_init__(self):
        try:
            for name in ("evaluations", "metrics", "variants", "claims", "stages"):
                value = getattr(self, name)
                if not isinstance(value, (tuple, list)):
                    self._fail(name, f"expected a tuple, got {type(value).__name__}")
                object.__setattr__(self, name, tuple(value))
            self._check()
        except SpecError as error:
            raise SpecError(f"spec {self.name!r}: {error}") from None

    @staticmethod
    def _fail(where: str, message: str):
        raise SpecError(f"{where}: {message}")

    def variant(self, name: str) -> Variant:
        """The variant called ``name``."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"variant {name!r}; variants: {', '.join(v.name for v in self.variants)}")

    def metric(self, name: str) -> Metric:
        """The metric called ``name``."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(f"metric {name!r}; metrics: {', '.join(m.name for m in self.metrics)}")

    def cell_recipe(self, variant: str, quick: bool) -> dict:
        """The merged recipe of a variant (base, the variant's overrides, then ``quick`` in quick mode)
        with ``data.train`` = ``"$train"`` unless a recipe sets it; tokens unresolved."""
        return merge_recipes({"data": {"train": TRAIN_TOKEN}}, self.recipe, self.variant(variant).recipe,
                             self.quick if quick else {})

    def image_size(self) -> int:
        """The face side the models see: ``data.image_size`` of the base recipe (with its default)."""
        from ..train.config import config_from_dict

        return config_from_dict(merge_recipes(self.recipe)).data.image_size

    def pilot_spec(self, candidate: str) -> "ExperimentSpec":
        """The spec of one pilot run: the world of ``pilot_worlds[candidate]``, the pilot variant alone
        (with the stages it uses), no claims."""
        baseline = self.variant(self.pilot_variant or self.variants[0].name)
        used = stage_references(self.cell_recipe(baseline.name, False)) | {baseline.stage}
        return dataclasses.replace(self, name=f"{self.name}-pilot-{candidate}",
                                   world=self.world.replaced(self.pilot_worlds[candidate]), variants=(baseline,),
                                   stages=tuple(s for s in self.stages if s.name in used), claims=(),
                                   pilot_worlds={}, pilot_variant="")

    def stage_recipe(self, stage: Stage, quick: bool) -> dict:
        """The recipe of a stage (with its ``quick`` overrides in quick mode); tokens unresolved."""
        return merge_recipes(stage.recipe, stage.quick if quick else {})

    # ------------------------------------------------------------------ checks

    def _names(self, where: str, items, kind: type, pattern: re.Pattern = _NAME, what: str = _NAME_TEXT) -> list[str]:
        names = []
        for k, item in enumerate(items):
            if not isinstance(item, kind):
                self._fail(f"{where}[{k}]", f"expected a {kind.__name__}, got {type(item).__name__}")
            if not isinstance(item.name, str) or not pattern.fullmatch(item.name):
                self._fail(f"{where}[{k}].name", f"expected {what}, got {item.name!r}")
            if item.name in names:
                self._fail(f"{where}[{k}].name", f"{item.name!r} is given twice")
            names.append(item.name)
        return names

    def _check(self) -> None:
        from ..data.synthetic.rendered_data import check_settings
        from ..eval.protocols import parse_spec
        from ..eval.sets import SET_FUNCTIONS

        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            self._fail("name", f"expected {_NAME_TEXT}, got {self.name!r}")
        for key in ("seeds", "quick_seeds"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._fail(key, f"expected an int >= 1, got {value!r}")
        world = self.world
        if not isinstance(world, World):
            self._fail("world", f"expected a World, got {type(world).__name__}")
        for key in ("identities", "per_identity"):
            value = getattr(world, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._fail(f"world.{key}", f"expected an int >= 1, got {value!r}")
        if "difficulty" in world.nuisance:
            self._fail("world.nuisance", "difficulty is World.difficulty, not a nuisance entry")
        for name, protocol in world.protocols.items():
            if not isinstance(protocol, Protocol):
                self._fail(f"world.protocols[{name!r}]", f"expected a Protocol, got {type(protocol).__name__}")
        for key, taken in (("options", ("seed", "size", "nuisance")),
                           ("train_options", ("num_identities", "per_identity"))):
            given = sorted(set(getattr(world, key)) & set(taken))
            if given:
                self._fail(f"world.{key}", f"{', '.join(given)} must be World's own fields, not {key} entries")
        try:
            check_settings(world.data_settings())
        except ValueError as error:   # its paths are the settings' keys: name the World's fields
            where, _, message = str(error).partition(": ")
            where = {"train": "world.train_options"}.get(where, where)
            self._fail(where if where.startswith("world") else f"world.{where}", message)

        evaluations = self._names("evaluations", self.evaluations, Evaluation, _EVALUATION,
                                  "a name without '=', '/', '\\' or spaces")
        for k, evaluation in enumerate(self.evaluations):
            where = f"evaluations[{k}]"
            if evaluation.protocol not in world.protocols:
                self._fail(f"{where}.protocol", f"{evaluation.protocol!r} is not a protocol of the world; "
                                                f"protocols: {', '.join(world.protocols)}")
            try:
                _, _, path, _ = parse_spec(f"x{evaluation.options}")
            except ValueError as error:
                self._fail(f"{where}.options", str(error))
            if str(path) != "x":
                self._fail(f"{where}.options", f"expected @Npx / @blurL options, got {evaluation.options!r}")
            if evaluation.set_function not in SET_FUNCTIONS:
                self._fail(f"{where}.set_function", f"expected one of {', '.join(SET_FUNCTIONS)}, "
                                                    f"got {evaluation.set_function!r}")

        metrics = self._names("metrics", self.metrics, Metric, _LABEL, "a non-empty label")
        for k, metric in enumerate(self.metrics):
            if metric.evaluation not in evaluations:
                self._fail(f"metrics[{k}].evaluation", f"{metric.evaluation!r} is not an evaluation; "
                                                       f"evaluations: {', '.join(evaluations)}")
            if not isinstance(metric.scale, (int, float)) or not metric.scale > 0:
                self._fail(f"metrics[{k}].scale", f"expected a number > 0, got {metric.scale!r}")
            if metric.minus and (metric.minus not in evaluations or metric.minus == metric.evaluation):
                self._fail(f"metrics[{k}].minus", f"expected another evaluation than {metric.evaluation!r} "
                                                  f"(evaluations: {', '.join(evaluations)}), got {metric.minus!r}")

        stages = self._names("stages", self.stages, Stage)
        variants = self._names("variants", self.variants, Variant)
        if not variants:
            self._fail("variants", "expected at least one variant")
        for k, variant in enumerate(self.variants):
            if variant.stage and variant.stage not in stages:
                self._fail(f"variants[{k}].stage", f"{variant.stage!r} is not a stage; stages: "
                                                   f"{', '.join(stages) or 'none'}")
            if variant.stage and variant.recipe:
                self._fail(f"variants[{k}].recipe", f"the row evaluates stage {variant.stage!r} and trains nothing: "
                                                    f"expected no recipe, got {', '.join(variant.recipe)}")
        self._check_recipe("recipe", merge_recipes({"data": {"train": TRAIN_TOKEN}}, self.recipe))
        recipes = [(f"stages[{k}]", self.stage_recipe(s, quick)) for k, s in enumerate(self.stages)
                   for quick in (False, True)]
        recipes += [(f"variants[{k}]", self.cell_recipe(v.name, quick)) for k, v in enumerate(self.variants)
                    for quick in (False, True)]
        for where, recipe in recipes:
            unknown = stage_references(recipe) - set(stages)
            own = where.startswith("stages") and stage_references(recipe)
            if unknown or own:
                self._fail(f"{where}.recipe", f"refers to {', '.join(sorted(unknown or own))}: "
                                              f"{'stages take no stage' if own else 'no such stage'}; stages: "
                                              f"{', '.join(stages) or 'none'}")
            self._check_recipe(where, recipe)
        if self.floors:
            from ..eval.shortcuts import untrained_network

            try:
                untrained_network(0, image_size=self.image_size(), **self.floor_network)
            except (TypeError, ValueError) as error:
                self._fail("floor_network", str(error))
        if self.pilot_variant and self.pilot_variant not in variants:
            self._fail("pilot_variant", f"{self.pilot_variant!r} is not a variant; variants: {', '.join(variants)}")
        for candidate, changes in self.pilot_worlds.items():
            where = f"pilot_worlds[{candidate!r}]"
            if not isinstance(candidate, str) or not _NAME.fullmatch(candidate):
                self._fail(where, f"expected a name of {_NAME_TEXT}")
            if not isinstance(changes, Mapping):
                self._fail(where, f"expected a mapping of World fields, got {type(changes).__name__}")
            try:
                world_changed = self.world.replaced(changes)
                check_settings(world_changed.data_settings())
            except (SpecError, ValueError) as error:
                self._fail(where, str(error))
        for k, variant in enumerate(self.variants):
            for metric, value in variant.paper.items():
                if metric not in metrics:
                    self._fail(f"variants[{k}].paper", f"{metric!r} is not a metric; metrics: {', '.join(metrics)}")
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    self._fail(f"variants[{k}].paper[{metric!r}]", f"expected a number, got {value!r}")

        for k, claim in enumerate(self.claims):
            where = f"claims[{k}]"
            if not isinstance(claim, Claim):
                self._fail(where, f"expected a Claim, got {type(claim).__name__}")
            for key in ("variant", "baseline"):
                if getattr(claim, key) not in variants:
                    self._fail(f"{where}.{key}", f"{getattr(claim, key)!r} is not a variant; "
                                                 f"variants: {', '.join(variants)}")
            if claim.variant == claim.baseline:
                self._fail(f"{where}.baseline", f"the claim compares {claim.variant!r} with itself")
            if claim.metric not in metrics:
                self._fail(f"{where}.metric", f"{claim.metric!r} is not a metric; metrics: {', '.join(metrics)}")
            if claim.direction not in (">", ">="):
                self._fail(f"{where}.direction", f"expected '>' (better) or '>=' (not worse), got {claim.direction!r}")
            if not isinstance(claim.margin, (int, float)) or not claim.margin >= 0 \
                    or (claim.direction == ">" and claim.margin != 0):
                self._fail(f"{where}.margin", f"expected a number >= 0 (0 with '>'), got {claim.margin!r}")

    def _check_recipe(self, where: str, recipe: dict) -> None:
        """Build the :class:`~pyfacex.train.Config` of a recipe (tokens stand in for paths)."""
        from ..train.config import config_from_dict

        try:
            config_from_dict(recipe)
        except (ValueError, TypeError) as error:
            self._fail(where if where == "recipe" else f"{where}.recipe", str(error))
