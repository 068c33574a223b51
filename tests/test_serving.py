"""HTTP layer: request validation, error mapping, response shape (with a stand-in recommender)."""

from fastapi.testclient import TestClient

from prismrec.errors import PrismrecError
from prismrec.serving.app import create_app


class EchoRecommender:
    model_name = "echo"
    num_items = 3
    catalog = {"a": "Item A", "b": "Item B", "c": "Item C"}

    def recommend(self, history, k):
        unknown = [h for h in history if h not in self.catalog]
        if unknown:
            raise PrismrecError(f"history: unknown item id(s) {unknown}")
        ranked = [i for i in self.catalog if i not in history] + list(history)
        return [{"item_id": i, "title": self.catalog[i], "score": float(-r)} for r, i in enumerate(ranked[:k])]


def client():
    return TestClient(create_app(EchoRecommender()))


def test_health_reports_model_and_catalog_size():
    r = client().get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": "echo", "items": 3}


def test_recommend_returns_k_items_in_order():
    r = client().post("/recommend", json={"history": ["a"], "k": 2})
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["item_id"] for i in items] == ["b", "c"]
    assert items[0]["score"] >= items[1]["score"]


def test_unknown_item_is_a_422_naming_it():
    r = client().post("/recommend", json={"history": ["zzz"], "k": 2})
    assert r.status_code == 422
    assert "zzz" in r.json()["detail"]


def test_bad_k_and_empty_history_are_rejected():
    assert client().post("/recommend", json={"history": ["a"], "k": 0}).status_code == 422
    assert client().post("/recommend", json={"history": [], "k": 3}).status_code == 422
