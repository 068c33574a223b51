"""HTTP layer: request validation, error mapping, response shape (with a stand-in recommender)."""

from fastapi.testclient import TestClient

from prismrec.errors import PrismrecError
from prismrec.serving.app import create_app


class EchoRecommender:
    model_name = "echo"
    num_items = 3
    catalog = {"a": "Item A", "b": "Item B", "c": "Item C"}

    def __init__(self):
        self.calls = []  # (histories, timestamps) of each ranking pass

    def recommend_many(self, histories, k, timestamps=None):
        self.calls.append((histories, timestamps))
        results = []
        for n, history in enumerate(histories):
            unknown = [h for h in history if h not in self.catalog]
            if unknown:
                raise PrismrecError(f"histories[{n}]: unknown item id(s) {unknown}")
            ranked = [i for i in self.catalog if i not in history] + list(history)
            results.append([{"item_id": i, "title": self.catalog[i], "score": float(-r)}
                            for r, i in enumerate(ranked[:k])])
        return results


def client(recommender=None):
    return TestClient(create_app(recommender or EchoRecommender()))


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


def test_batch_is_ranked_in_one_pass_and_answered_in_order():
    echo = EchoRecommender()
    r = client(echo).post("/recommend/batch", json={"histories": [["a"], ["c", "b"], ["b"]], "k": 2})
    assert r.status_code == 200
    assert [[i["item_id"] for i in res["items"]] for res in r.json()["results"]] == [["b", "c"], ["a", "c"], ["a", "c"]]
    assert len(echo.calls) == 1 and echo.calls[0] == ([["a"], ["c", "b"], ["b"]], None)


def test_timestamps_reach_the_recommender_and_bad_batches_are_422():
    echo = EchoRecommender()
    app = client(echo)
    assert app.post("/recommend", json={"history": ["a", "b"], "timestamps": [5, 9]}).status_code == 200
    assert echo.calls[-1] == ([["a", "b"]], [[5, 9]])
    r = app.post("/recommend/batch", json={"histories": [["a"], ["zzz"]], "k": 2})
    assert r.status_code == 422 and "histories[1]" in r.json()["detail"] and "zzz" in r.json()["detail"]
    r = app.post("/recommend/batch", json={"histories": [["a"], ["b"]], "timestamps": [[1]]})
    assert r.status_code == 422 and "timestamps" in r.json()["detail"]
    assert app.post("/recommend/batch", json={"histories": []}).status_code == 422
    assert app.post("/recommend/batch", json={"histories": [["a"]] * 1025}).status_code == 422   # MAX_BATCH


def test_serves_a_trained_model_from_a_run_directory(tmp_path):
    """The real Recommender behind the app: most-popular trained on a synthetic run."""
    from prismrec.data.dataset import load_prepared
    from prismrec.data.synthetic import write_synthetic_run
    from prismrec.recommender.config import RecommenderConfig
    from prismrec.recommender.inference import Recommender
    from prismrec.recommender.trainer import train_run

    run = write_synthetic_run(tmp_path)
    cfg = RecommenderConfig(model="pop", device="cpu")
    train_run(run, cfg)
    app = TestClient(create_app(Recommender.load(run, cfg)))
    data = load_prepared(run)
    assert app.get("/health").json() == {"status": "ok", "model": "pop", "items": data.num_items}
    history = data.items["item_id"].tolist()[:3]
    items = app.post("/recommend", json={"history": history, "k": 5}).json()["items"]
    most_popular = data.items.sort_values("train_count", ascending=False, kind="stable")["item_id"].tolist()[:5]
    assert [i["item_id"] for i in items] == most_popular
    assert app.post("/recommend", json={"history": ["nope"], "k": 5}).status_code == 422
    # a batch answers each history as its own request would; timestamps are checked per history
    histories = [history, history[:1]]
    batch = app.post("/recommend/batch", json={"histories": histories, "k": 5}).json()["results"]
    assert batch == [app.post("/recommend", json={"history": h, "k": 5}).json() for h in histories]
    r = app.post("/recommend/batch", json={"histories": histories, "timestamps": [[3, 2, 1], [7]]})
    assert r.status_code == 422 and r.json()["detail"].startswith("histories[0]: timestamps: expected non-decreasing")
    r = app.post("/recommend/batch", json={"histories": histories, "timestamps": [[1, 2, 3], [7, 8]]})
    assert r.status_code == 422 and r.json()["detail"].startswith("histories[1]: timestamps: expected 1 values")
