"""The API's pydantic models: the contract and the /docs page at once.

Request rows are documented with the 22 features, their valid codes and names; the library validates the
rows themselves (so a bad row gets its own sentence naming row, column, value and the valid codes).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..schema import CODES, FEATURES, valid_codes

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


class Error(BaseModel):
    """One sentence saying what was wrong."""

    detail: str


REQUEST_MODELS = [PredictRequest, SeedPredictRequest, FeedbackRequest, SeedFeedbackRequest]

#: A valid row for the examples in /docs (the first code of each feature).
EXAMPLE_ROW = {f: next(iter(CODES[f])) for f in FEATURES}
