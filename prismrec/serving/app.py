"""HTTP serving: a FastAPI app over any object with ``recommend(history, k)``.

    GET  /health                     -> {"status": "ok", "model": ..., "items": N}
    POST /recommend {"history": [...], "k": 10}
                                     -> {"items": [{"item_id", "title", "score"}, ...]}

Unknown item ids and bad ``k`` are 422 responses naming the offending field.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from prismrec.errors import PrismrecError


class RecommenderLike(Protocol):
    model_name: str
    num_items: int

    def recommend(self, history: list[str], k: int) -> list[dict[str, Any]]: ...


class RecommendRequest(BaseModel):
    history: list[str] = Field(..., min_length=1, description="Raw item ids, oldest first.")
    k: int = Field(10, ge=1, le=1000, description="Number of items to return.")


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    score: float


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]


def create_app(recommender: RecommenderLike) -> FastAPI:
    app = FastAPI(title="prismrec", description="Next-item recommendations with Semantic IDs.")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": recommender.model_name, "items": recommender.num_items}

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(request: RecommendRequest) -> RecommendResponse:
        try:
            items = recommender.recommend(request.history, request.k)
        except PrismrecError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        return RecommendResponse(items=[RecommendedItem(**item) for item in items])

    return app
