"""The scoring API (FastAPI). `lakehouse serve` runs it under uvicorn on 127.0.0.1.

Unknown customers and products get 404 (no fallback score: a made-up customer id must not be
scored as if it were a new one); malformed bodies get 422 naming the field; batches larger than
``serving.max_batch`` and orders with more than ``serving.max_items`` lines get 413.
"""

import asyncio
import gc
import hmac
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.registry.promotion import UntrustedModelError
from lakehouse_assets.runtime import is_loopback
from lakehouse_assets.serving.batching import MicroBatcher
from lakehouse_assets.serving.inference_log import InferenceLog, record
from lakehouse_assets.serving.schemas import (
    BatchPrediction,
    BatchRequest,
    Order,
    Prediction,
    Problem,
    RolloutChange,
    RolloutState,
)
from lakehouse_assets.serving.scoring import ROLLOUT_MODES, AliasedModel, OrderFeatures, Rollout
from lakehouse_assets.settings import ServingSettings

log = logging.getLogger(__name__)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong bearer token (exposed service)"},
    404: {"model": Problem, "description": "unknown customer or product: no online features"},
    413: {"model": Problem, "description": "too many orders in the batch or lines in an order"},
    503: {"model": Problem, "description": "no champion model loaded yet"},
}


def check_exposure(host: str, settings: ServingSettings) -> None:
    """Refuse to serve beyond loopback without a token."""
    if not is_loopback(host) and settings.token is None:
        raise SystemExit(f"refusing to bind {host} without a token: set LAKEHOUSE_SERVING__TOKEN "
                         "(every scoring call must then send `Authorization: Bearer <token>`)")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lakehouse_serving_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram(
            "lakehouse_serving_request_seconds", "request latency by path", ["path"],
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry)
        self.predictions = Counter("lakehouse_serving_predictions", "orders scored",
                                   registry=self.registry)
        self.model_version = Gauge("lakehouse_serving_model_version",
                                   "registry version of the model serving requests",
                                   ["model_name"], registry=self.registry)
        self.challenger_version = Gauge(
            "lakehouse_serving_challenger_version",
            "registry version of the loaded challenger (0: none)", ["model_name"],
            registry=self.registry)
        self.rollout_mode = Gauge("lakehouse_serving_rollout_mode",
                                  "1 for the active rollout mode (champion, shadow, canary)",
                                  ["mode"], registry=self.registry)
        self.canary_share = Gauge("lakehouse_serving_canary_share",
                                  "share of customers the challenger answers in canary mode",
                                  registry=self.registry)
        self.answers = Counter("lakehouse_serving_answers", "orders answered, by which model",
                               ["served_by"], registry=self.registry)
        self.shadow_scores = Counter("lakehouse_serving_shadow_scores",
                                     "orders scored by the model that did not answer",
                                     registry=self.registry)

    def show(self, champion: AliasedModel, challenger: AliasedModel, rollout: Rollout) -> None:
        """The loaded versions and the rollout, as gauges."""
        if champion.current:
            self.model_version.labels(champion.name).set(champion.current.version)
        self.challenger_version.labels(challenger.name).set(
            challenger.current.version if challenger.current else 0)
        for mode in ROLLOUT_MODES:
            self.rollout_mode.labels(mode).set(1 if mode == rollout.mode else 0)
        self.canary_share.set(rollout.canary_share)


def create_app(settings: ServingSettings, champion: AliasedModel,
               features: Callable[[], OrderFeatures], engine: LakeEngine,
               challenger: AliasedModel | None = None) -> FastAPI:
    """``features`` opens the online store (at start, in the server process). ``challenger``
    (the registry's ``challenger`` alias) takes part as the rollout setting says."""
    metrics = Metrics()
    state: dict[str, Any] = {}
    challenger = challenger or AliasedModel(champion.client, champion.name, "challenger")
    state["rollout"] = Rollout(settings.rollout, settings.canary_share)

    def refresh_models() -> bool:
        """Both aliases; a failure of one leaves the other (and the loaded versions) serving. A
        refused (non-skops) version is reported after both were tried."""
        changed, refused = False, None
        for model in (champion, challenger):
            try:
                changed = model.refresh() or changed
            except UntrustedModelError as error:
                refused = refused or error
            except Exception:
                log.exception("%s reload failed; still serving the loaded version", model.alias)
        metrics.show(champion, challenger, state["rollout"])
        if refused is not None:
            raise refused
        return changed

    async def poll_models() -> None:
        while True:
            await asyncio.sleep(settings.reload_seconds)
            try:
                await asyncio.to_thread(refresh_models)
            except Exception:
                log.exception("model reload failed; still serving the loaded versions")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        champion.refresh()
        try:
            challenger.refresh()
        except UntrustedModelError:
            log.exception("challenger refused; serving without it")
        metrics.show(champion, challenger, state["rollout"])
        state["features"] = features()
        state["log"] = InferenceLog(engine, settings.log_flush_seconds)
        state["batcher"] = MicroBatcher(score_orders, settings.batch_window_ms / 1000,
                                        max_items=settings.max_batch)
        poller = asyncio.create_task(poll_models())
        # Everything loaded so far (libraries, model, store) lives as long as the process: keep
        # it out of the garbage collector's full passes, which otherwise stall requests.
        gc.collect()
        gc.freeze()
        # The log writer thread (commits, shadow scores) hands the interpreter back to request
        # handling within 1 ms instead of Python's default 5 ms.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.001)
        try:
            yield
        finally:
            sys.setswitchinterval(switch_interval)  # the app may run inside a larger process
            poller.cancel()
            state["log"].close()  # nothing queued is lost on shutdown

    app = FastAPI(title="lakehouse scoring", version="1",
                  description="Return-risk scoring with online feature lookup. " + __doc__,
                  lifespan=lifespan)
    bearer = HTTPBearer(auto_error=False)

    def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if settings.token is None:
            return
        expected = settings.token.get_secret_value()
        if credentials is None or not hmac.compare_digest(credentials.credentials, expected):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def count(request: Request, call_next: Callable) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        path = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        return response

    def score_orders(orders: list[Order]) -> list[tuple[Any, ...] | str]:
        """Lookup and scoring of the orders of every request in the batch: one call per model
        that answers. Per order: (features, product features, the answering alias, its model,
        its score, the other model or None). The other model (shadow, or the champion beside a
        canary) is scored off the request path, by the inference log writer."""
        model, other, rollout = champion.current, challenger.current, state["rollout"]
        if model is None:  # every request of the batch gets the 503
            raise HTTPException(503, f"no {champion.name}@champion in the registry yet")
        if rollout.mode == "champion" or other is None or other.version == model.version:
            other = None
        found = state["features"].lookup(orders)
        by_challenger = [other is not None and rollout.challenger_answers(o.customer_id)
                         for o in orders]
        scores: dict[int, float] = {}
        for answering, flag in ((model, False), (other, True)):
            picked = [i for i, f in enumerate(found)
                      if not isinstance(f, str) and by_challenger[i] == flag]
            if answering is not None and picked:
                for i, p in zip(picked, answering.predict([found[i][0] for i in picked]),
                                strict=True):
                    scores[i] = float(p)
        return [f if isinstance(f, str) else
                (*f, "challenger", other, scores[i], model) if by_challenger[i] else
                (*f, "champion", model, scores[i], other) for i, f in enumerate(found)]

    async def predict_orders(orders: list[Order], endpoint: str) -> list[Prediction]:
        started = time.perf_counter()
        too_long = next((o for o in orders if len(o.items) > settings.max_items), None)
        if too_long is not None:
            raise HTTPException(413, f"an order has {len(too_long.items)} lines; at most "
                                f"{settings.max_items} (serving.max_items)")
        results = await state["batcher"].submit(orders)
        problem = next((r for r in results if isinstance(r, str)), None)
        if problem is not None:
            raise HTTPException(404, problem)
        now = datetime.now(UTC).replace(tzinfo=None)
        latency_ms = (time.perf_counter() - started) * 1000
        predictions, logged, mode = [], [], state["rollout"].mode
        for order, (row, product, served_by, model, p, shadow) in zip(orders, results,
                                                                     strict=True):
            request_id = order.request_id or uuid.uuid4().hex
            predictions.append(Prediction(
                request_id=request_id, return_probability=p, model_name=model.name,
                model_version=model.version, served_by=served_by, features=row,
                product_features={str(k): v for k, v in product.items()}))
            logged.append(record(request_id, now, endpoint, model.name, model.version,
                                 order.model_dump(), row, product, p, latency_ms,
                                 rollout=mode, served_by=served_by, shadow=shadow))
            metrics.answers.labels(served_by).inc()
            if shadow is not None:
                metrics.shadow_scores.inc()
        state["log"].append(logged)
        metrics.predictions.inc(len(predictions))
        return predictions

    @app.post("/v1/predict", response_model=Prediction, responses=ERRORS,
              dependencies=[Depends(authorized)], summary="Score one order")
    async def predict(order: Order) -> Prediction:
        return (await predict_orders([order], "predict"))[0]

    @app.post("/v1/predict/batch", response_model=BatchPrediction, responses=ERRORS,
              dependencies=[Depends(authorized)], summary="Score many orders in one call")
    async def predict_batch(batch: BatchRequest) -> BatchPrediction:
        if len(batch.orders) > settings.max_batch:
            raise HTTPException(413, f"{len(batch.orders)} orders in one batch; at most "
                                f"{settings.max_batch} (serving.max_batch)")
        return BatchPrediction(predictions=await predict_orders(batch.orders, "batch"))

    @app.post("/v1/reload", dependencies=[Depends(authorized)],
              responses={**ERRORS, 409: {"model": Problem, "description":
                                         "the new champion or challenger is not a skops "
                                         "model: refused"}},
              summary="Load the champion and challenger now if their aliases moved")
    async def reload() -> dict[str, Any]:
        try:
            changed = await asyncio.to_thread(refresh_models)
        except UntrustedModelError as refused:  # the loaded version keeps serving
            raise HTTPException(409, str(refused)) from refused
        return {"changed": changed,
                "model_version": champion.current.version if champion.current else None,
                "challenger_version": challenger.current.version if challenger.current else None}

    def rollout_state() -> RolloutState:
        rollout = state["rollout"]
        return RolloutState(mode=rollout.mode, canary_share=rollout.canary_share,
                            champion_version=champion.current.version if champion.current
                            else None,
                            challenger_version=challenger.current.version if challenger.current
                            else None)

    @app.get("/v1/rollout", response_model=RolloutState, summary="How the challenger takes part")
    async def get_rollout() -> RolloutState:
        return rollout_state()

    @app.put("/v1/rollout", response_model=RolloutState, dependencies=[Depends(authorized)],
             responses=ERRORS, summary="Change the rollout mode or canary share (no restart)")
    async def put_rollout(change: RolloutChange) -> RolloutState:
        state["rollout"] = Rollout(change.mode, change.canary_share)  # one swap: no mixed state
        metrics.show(champion, challenger, state["rollout"])
        log.info("rollout: %s, canary share %s", change.mode, change.canary_share)
        return rollout_state()

    @app.get("/health", summary="The process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="A champion is loaded and the online store answers",
             responses={503: {"model": Problem}})
    async def ready(response: Response) -> dict[str, Any]:
        checks: dict[str, Any] = {"model": champion.current is not None}
        try:
            state["features"].store.get_online_features(
                features=state["features"].product_refs[:1], entity_rows=[{"product_id": 0}])
            checks["online_store"] = True
        except Exception as error:  # the store is down or misconfigured: not ready
            checks["online_store"] = f"unreachable: {error}"
        ok = checks["model"] and checks["online_store"] is True
        if champion.current:
            checks["model_version"] = champion.current.version
        checks["rollout"] = rollout_state().model_dump()
        response.status_code = 200 if ok else 503
        return {"ready": ok, **checks}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
