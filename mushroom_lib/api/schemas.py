"""The API's pydantic models: the contract and the /docs page at once.

Request rows are documented with the 22 features, their valid codes and names; the library validates the
rows themselves (so a bad row gets its own sentence naming row, column, value and the valid codes).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    create_model,
)

from ..data.schema import CODES, FEATURES, valid_codes

_OPEN = ConfigDict(extra="allow", populate_by_name=True)


def _feature(name: str):
    codes = list(CODES[name])
    return (str, Field(alias=name, description=f"{name}: {valid_codes(name)}", examples=[codes[0]],
                       json_schema_extra={"enum": codes}))


#: One mushroom: the 22 features as one-letter codes (other keys are kept and echoed back).
Mushroom = create_model("Mushroom", __config__=ConfigDict(extra="forbid", populate_by_name=True),
                        __doc__="One mushroom: the 22 features as one-letter codes (names in each field's "
                        "description). Other keys (an id, say) are tolerated and echoed back unchanged.",
                        **{f.replace("-", "_"): _feature(f) for f in FEATURES})

LabelledMushroom = create_model(
    "LabelledMushroom", __base__=Mushroom, __doc__="A mushroom and its true label.",
    label=(str, Field(alias="class", description="the true label: e/edible or p/poisonous",
                      json_schema_extra={"enum": ["e", "p", "edible", "poisonous"]})))


_CLOSED = ConfigDict(extra="forbid")


class PredictRequest(BaseModel):
    """Rows to score."""

    model_config = _CLOSED
    rows: list[Mushroom] = Field(min_length=1)  # type: ignore[valid-type]


class FeedbackRequest(BaseModel):
    """Rows with their true label."""

    model_config = _CLOSED
    rows: list[LabelledMushroom] = Field(min_length=1)  # type: ignore[valid-type]


SEED_DOC = ("The seed's protocol: 22 integers in the dataset's feature order, each the position of the code "
            "among that column's codes found in data/mushrooms.csv, sorted alphabetically (what scikit-learn's "
            "LabelEncoder fitted on mushrooms.csv gives).")


class SeedPredictRequest(BaseModel):
    __doc__ = SEED_DOC
    model_config = _CLOSED
    observation: list[int] = Field(min_length=22, max_length=22)


class SeedFeedbackRequest(BaseModel):
    __doc__ = SEED_DOC + " `target` is the true label: \"True\" = poisonous, \"False\" = edible."
    model_config = _CLOSED
    observation: list[int] = Field(min_length=22, max_length=22)
    prediction: Literal["Poisonous", "Edible"] | None = None
    target: Literal["True", "False"]


class Scored(BaseModel):
    """The columns the model adds to every row."""

    model_config = _OPEN
    p_poisonous: float = Field(ge=0, le=1, description="probability of poisonous")
    uncertain: bool = Field(description="called poisonous only by the safety threshold: treat as poisonous")
    unseen_codes: str = Field(description="valid codes the model never saw in training, 'col=code;...'")
    nearest_known: int | None = Field(None, description="features that differ from the closest known row")
    reason: str | None = Field(None, description="why the answer leans poisonous, when it does")
    model_version: str


class Prediction(Scored):
    """One scored row: the input keys as sent, then every column the library returns."""

    prediction: Literal["edible", "poisonous"]


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[Prediction]


class SeedPredictResponse(Scored):
    """The seed's answer, plus our extra fields."""

    prediction: Literal["Edible", "Poisonous"]


class Receipt(BaseModel):
    """What a feedback submission did; the retrain (when due) runs in the background."""

    model_config = ConfigDict(extra="allow")
    rows_written: int
    retrained: bool
    promoted: bool
    model_version: str | None
    rows_until_retrain: int
    reason: str | None = None
    contradictions: int = 0
    retrain_pending: bool = False


class Status(BaseModel):
    """``mushroom status --json``."""

    model_config = ConfigDict(extra="allow")
    model_version: str | None = None
    metrics: dict[str, Any] = {}
    threshold: float | None = None
    feedback_rows: int | None = None
    rows_until_retrain: int | None = None
    k: int | None = None
    last_retrain: dict[str, Any] | None = None


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str
    champion: bool
    status: str | None = None
    trigger: str | None = None
    created_utc: str | None = None
    parent: str | None = None
    threshold: float | None = None
    holdout_metrics: dict[str, Any] = {}
    reason: str | None = None


class ModelList(BaseModel):
    champion: str | None
    versions: list[ModelInfo]


class ChampionChange(BaseModel):
    model_version: str
    previous: str | None


class Health(BaseModel):
    status: Literal["alive"]
    worker: int


class Ready(BaseModel):
    status: Literal["ready"]
    model_version: str
    worker: int


# ---------------------------------------------------------------- identify
def _maybe(name: str):
    codes = list(CODES[name])
    return (str | None, Field(None, alias=name, description=f"{name}: {valid_codes(name)}; \"unknown\", \"\", "
                              "null or absent leaves it open", examples=[codes[0]],
                              json_schema_extra={"enum": [*codes, "unknown", "", None]}))


IdentifyRequest = create_model(
    "IdentifyRequest", __config__=ConfigDict(extra="forbid", populate_by_name=True),
    __doc__="What you know of one mushroom: any subset of the 22 features as one-letter codes (names in each "
            "field's description). A feature left out, null or \"unknown\" is open.",
    **{f.replace("-", "_"): _maybe(f) for f in FEATURES})


class AskNext(BaseModel):
    """The open feature that best separates the matching mushrooms (largest information gain on the class)."""

    feature: str
    information_gain: float = Field(ge=0)
    codes: dict[str, str] = Field(description="the codes seen among the matches, with their names")


class IdentifyResponse(BaseModel):
    """The worst case over the dataset's known mushrooms that match: edible only if some match and all are."""

    model_config = ConfigDict(extra="allow")
    prediction: Literal["edible", "poisonous"]
    matching_known: int = Field(ge=0, description="known mushrooms in the dataset with these features")
    matching_poisonous: int = Field(ge=0, description="how many of them are poisonous")
    reason: str
    ask_next: AskNext | None = Field(description="null when the matches all share a class or none match")
    given: dict[str, str] = Field(description="the features taken into account (open ones left out)")
    note: str
    model: Prediction | None = Field(None, description="with all 22 features given: the serving model's answer")


# ---------------------------------------------------------------- feedback review
class FeedbackRow(BaseModel):
    """One stored feedback row: its id, who sent it, and whether it is excluded (and why, by whom, when)."""

    model_config = ConfigDict(extra="allow")
    feedback_id: int
    source: str
    timestamp: str | None = None
    target: str | None = Field(None, description="the label sent: edible or poisonous")
    prediction: str | None = Field(None, description="what the serving model said when the row was sent")
    model_version: str | None = None
    contradicts: bool = Field(description="the label disagrees with the dataset's label for the same mushroom")
    excluded: bool
    excluded_reason: str | None = None
    excluded_by: str | None = None
    excluded_at: str | None = None


class FeedbackList(BaseModel):
    """Feedback rows matching the filters, oldest first; ``total`` counts them all, ``rows`` is one page."""

    total: int = Field(ge=0)
    rows: list[FeedbackRow]


def _schema(**fixed):
    """A field's JSON schema replaced by ``fixed``: the document states what the library accepts (ids >= 1, a
    non-blank reason), while the library itself checks the values and answers with its own sentence."""
    def apply(schema: dict) -> None:
        keep = {k: schema[k] for k in ("title", "description") if k in schema}
        schema.clear()
        schema.update(keep, **fixed)
    return apply


def _whole(value):
    """JSON's 3.0 is the integer 3 (as JSON Schema says); true, "3" and 3.5 stay invalid."""
    return int(value) if type(value) is float and value.is_integer() else value


FeedbackId = Annotated[StrictInt, BeforeValidator(_whole)]
_IDS = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 10**12 - 1}, "minItems": 1}
#: free-text caps: a longer value is refused (422) before the library sees it
REASON_MAX, SOURCE_MAX, SINCE_MAX = 500, 40, 64
_REASON = {"type": "string", "minLength": 1, "maxLength": REASON_MAX, "pattern": "\\S"}
SINCE = "only rows sent at or after this time (ISO 8601, UTC unless it says otherwise), e.g. 2026-11-30 or " \
         "2026-11-30T12:00:00Z"


class ExcludeRequest(BaseModel):
    """Rows to keep out of training: ``ids``, or every row of ``source`` (optionally ``since`` a time), and
    the ``reason`` (required; kept in the audit log)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "required": ["reason"], "oneOf": [{"required": ["ids"]}, {"required": ["source"]}]})
    ids: list[FeedbackId] | None = Field(None, description="feedback ids (see GET /feedback)",
                                  json_schema_extra=_schema(**_IDS))
    source: str | None = Field(None, max_length=SOURCE_MAX,
                               description="every row this source sent (instead of ids)",
                               json_schema_extra=_schema(type="string", minLength=1, maxLength=SOURCE_MAX))
    since: str | None = Field(None, max_length=SINCE_MAX, description="with source: " + SINCE,
                              json_schema_extra=_schema(type="string", format="date-time", maxLength=SINCE_MAX))
    reason: str = Field("", max_length=REASON_MAX, description="why the rows are wrong",
                        json_schema_extra=_schema(**_REASON))


class IncludeRequest(BaseModel):
    """Excluded rows to use for training again."""

    model_config = ConfigDict(extra="forbid")
    ids: list[FeedbackId] = Field(description="feedback ids now excluded", json_schema_extra=_schema(**_IDS))
    reason: str = Field("", max_length=REASON_MAX, description="why (optional; kept in the audit log)",
                        json_schema_extra=_schema(type="string", maxLength=REASON_MAX))


class ReviewEvent(BaseModel):
    """The event written to the audit log beside prod_data.csv."""

    model_config = ConfigDict(extra="allow")
    action: Literal["exclude", "include"]
    ids: list[int]
    reason: str
    who: str
    when: str
    selection: dict[str, str | None] | None = None


class Error(BaseModel):
    """One sentence saying what was wrong."""

    detail: str


REQUEST_MODELS = [PredictRequest, SeedPredictRequest, FeedbackRequest, SeedFeedbackRequest, IdentifyRequest,
                  ExcludeRequest, IncludeRequest]

#: A valid row for the examples in /docs (the first code of each feature).
EXAMPLE_ROW = {f: next(iter(CODES[f])) for f in FEATURES}
