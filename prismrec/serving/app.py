"""HTTP serving: a FastAPI app over any object with ``recommend_many(histories, k, timestamps)``.

    GET  /health                     -> {"status": "ok", "model": ..., "items": N}
    POST /recommend {"history": [...], "k": 10, "timestamps": [...]}
                                     -> {"items": [{"item_id", "title", "score"}, ...]}
    POST /recommend/batch {"histories": [[...], ...], "k": 10, "timestamps": [[...], ...]}
                                     -> {"results": [{"items": [...]}, ...]}  (one per history, in order)

``timestamps`` (optional, Unix seconds, one per history item) give the model the time
intervals it was trained with; without them every interval is "unknown", as for a first
item. A batch is ranked in one pass (one batched beam search): far more users per second
than one request per user. Unknown item ids, bad ``k`` and mismatched timestamps are 422
responses naming the offending field (and the history's index in a batch).
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from prismrec.errors import PrismrecError


MAX_BATCH = 1024  # histories per batch request: bounds the memory of one ranking pass


class RecommenderLike(Protocol):
    model_name: str
    num_items: int

    def recommend_many(self, histories: list[list[str]], k: int,
                       timestamps: Optional[list[list[int]]] = None) -> list[list[dict[str, Any]]]: ...


class RecommendRequest(BaseModel):
    history: list[str] = Field(..., min_length=1, description="Raw item ids, oldest first.")
    k: int = Field(10, ge=1, le=1000, description="Number of items to return.")
    timestamps: Optional[list[int]] = Field(None, description="Unix seconds, one per history item (optional).")


class BatchRecommendRequest(BaseModel):
    histories: list[list[str]] = Field(..., min_length=1, max_length=MAX_BATCH,
                                       description="One list of raw item ids per user, oldest first.")
    k: int = Field(10, ge=1, le=1000, description="Number of items to return per history.")
    timestamps: Optional[list[list[int]]] = Field(None, description="Unix seconds per history item, one list "
                                                                    "per history (optional).")


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    score: float


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]


class BatchRecommendResponse(BaseModel):
    results: list[RecommendResponse]


def create_app(recommender: RecommenderLike) -> FastAPI:
    app = FastAPI(title="prismrec", description="Next-item recommendations with Semantic IDs.")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": recommender.model_name, "items": recommender.num_items}

    def rank(histories: list[list[str]], k: int, timestamps) -> list[RecommendResponse]:
        try:
            ranked = recommender.recommend_many(histories, k, timestamps)
        except PrismrecError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        return [RecommendResponse(items=[RecommendedItem(**item) for item in items]) for items in ranked]

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(request: RecommendRequest) -> RecommendResponse:
        timestamps = None if request.timestamps is None else [request.timestamps]
        return rank([request.history], request.k, timestamps)[0]

    @app.post("/recommend/batch", response_model=BatchRecommendResponse)
    def recommend_batch(request: BatchRecommendRequest) -> BatchRecommendResponse:
        if request.timestamps is not None and len(request.timestamps) != len(request.histories):
            raise HTTPException(status_code=422, detail=f"timestamps: expected {len(request.histories)} lists "
                                                        f"(one per history), got {len(request.timestamps)}")
        return BatchRecommendResponse(results=rank(request.histories, request.k, request.timestamps))

    return app
