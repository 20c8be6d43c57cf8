"""The scoring API (FastAPI). `lakehouse serve` runs it under uvicorn on 127.0.0.1.

Unknown customers and products get 404 (no fallback score: a made-up customer id must not be
scored as if it were a new one); malformed bodies get 422 naming the field (also for numbers that
are not finite and text that is not valid Unicode); batches larger than ``serving.max_batch``,
orders with more than ``serving.max_items`` lines and bodies over ``serving.max_body_bytes``
get 413.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
from lakehouse_assets.registry.promotion import CHALLENGER, UntrustedModelError
from lakehouse_assets.runtime import is_loopback
from lakehouse_assets.serving.batching import MicroBatcher
from lakehouse_assets.serving.inference_log import InferenceLog, log_schema, record
from lakehouse_assets.serving.schemas import (
    BatchPrediction,
    BatchRequest,
    Order,
    Prediction,
    Problem,
    RolloutChange,
    RolloutState,
    validation_problems,
)
from lakehouse_assets.serving.scoring import (
    ROLLOUT_MODES,
    AliasedModel,
    OrderFeatures,
    Rollout,
    Scored,
    Unscorable,
    score_orders,
)
from lakehouse_assets.settings import ServingSettings

log = logging.getLogger(__name__)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong bearer token (exposed service)"},
    404: {"model": Problem, "description": "unknown customer or product: no online features"},
    413: {
        "model": Problem,
        "description": "too many orders in the batch or lines in an order, "
        "or a body larger than serving.max_body_bytes",
    },
    503: {"model": Problem, "description": "no champion model loaded yet"},
}


def check_exposure(host: str, settings: ServingSettings) -> None:
    """Refuse to serve beyond loopback without a token."""
    if not is_loopback(host) and settings.token is None:
        raise SystemExit(
            f"refusing to bind {host} without a token: set LAKEHOUSE_SERVING__TOKEN "
            "(every scoring call must then send `Authorization: Bearer <token>`)"
        )


class Metrics:
    """The service's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lakehouse_serving_requests",
            "HTTP requests by path and status",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lakehouse_serving_request_seconds",
            "request latency by path",
            ["path"],
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.predictions = Counter("lakehouse_serving_predictions", "orders scored", registry=self.registry)
        self.model_version = Gauge(
            "lakehouse_serving_model_version",
            "registry version of the model serving requests",
            ["model_name"],
            registry=self.registry,
        )
        self.challenger_version = Gauge(
            "lakehouse_serving_challenger_version",
            "registry version of the loaded challenger (0: none)",
            ["model_name"],
            registry=self.registry,
        )
        self.rollout_mode = Gauge(
            "lakehouse_serving_rollout_mode",
            "1 for the active rollout mode (champion, shadow, canary)",
            ["mode"],
            registry=self.registry,
        )
        self.canary_share = Gauge(
            "lakehouse_serving_canary_share",
            "share of customers the challenger answers in canary mode",
            registry=self.registry,
        )
        self.answers = Counter(
            "lakehouse_serving_answers",
            "orders answered, by which model",
            ["served_by"],
            registry=self.registry,
        )
        self.shadow_scores = Counter(
            "lakehouse_serving_shadow_scores",
            "orders scored by the model that did not answer",
            registry=self.registry,
        )

    def show(self, champion: AliasedModel, challenger: AliasedModel, rollout: Rollout) -> None:
        """The loaded versions and the rollout, as gauges."""
        if champion.current:
            self.model_version.labels(champion.name).set(champion.current.version)
        self.challenger_version.labels(challenger.name).set(
            challenger.current.version if challenger.current else 0
        )
        for mode in ROLLOUT_MODES:
            self.rollout_mode.labels(mode).set(1 if mode == rollout.mode else 0)
        self.canary_share.set(rollout.canary_share)


@dataclass
class ScoringService:
    """The service's state and what its routes do. ``features`` opens the online store (at start,
    in the server process); the store, the inference log and the micro-batcher exist while the
    app runs (``start`` .. ``stop``)."""

    settings: ServingSettings
    champion: AliasedModel
    challenger: AliasedModel
    open_features: Callable[[], OrderFeatures]
    engine: LakeEngine
    metrics: Metrics = field(default_factory=Metrics)
    rollout: Rollout = field(default_factory=Rollout)
    _running: "_Running | None" = None

    def start(self) -> None:
        self.champion.refresh()
        try:
            self.challenger.refresh()
        except UntrustedModelError:
            log.exception("challenger refused; serving without it")
        self.metrics.show(self.champion, self.challenger, self.rollout)
        features = self.open_features()
        self._running = _Running(
            features,
            InferenceLog(self.engine, log_schema(features.product), self.settings.log_flush_seconds),
            MicroBatcher(self.score, self.settings.batch_window_ms / 1000, max_items=self.settings.max_batch),
        )

    def stop(self) -> None:
        if self._running is not None:
            self._running.log.close()  # nothing queued is lost on shutdown

    @property
    def running(self) -> "_Running":
        if self._running is None:
            raise RuntimeError("the scoring service has not started")
        return self._running

    def refresh_models(self) -> bool:
        """Both aliases; a failure of one leaves the other (and the loaded versions) serving. A
        refused (non-skops) version is reported after both were tried."""
        changed, refused = False, None
        for model in (self.champion, self.challenger):
            try:
                changed = model.refresh() or changed
            except UntrustedModelError as error:
                refused = refused or error
            except Exception:
                log.exception("%s reload failed; still serving the loaded version", model.alias)
        self.metrics.show(self.champion, self.challenger, self.rollout)
        if refused is not None:
            raise refused
        return changed

    def set_rollout(self, rollout: Rollout) -> None:
        self.rollout = rollout  # one swap: no request sees a mixed state
        self.metrics.show(self.champion, self.challenger, rollout)

    def score(self, orders: list[Order]) -> list[Scored | Unscorable]:
        """Lookup and scoring of the orders of every request in a micro-batch."""
        champion, rollout = self.champion.current, self.rollout
        if champion is None:  # every request of the batch gets the 503
            raise HTTPException(503, f"no {self.champion.name}@champion in the registry yet")
        found = self.running.features.lookup(orders)
        return score_orders(
            found, [o.customer_id for o in orders], champion, self.challenger.current, rollout
        )

    async def predict(self, orders: list[Order], endpoint: str) -> list[Prediction]:
        started = time.perf_counter()
        too_long = next((o for o in orders if len(o.items) > self.settings.max_items), None)
        if too_long is not None:
            raise HTTPException(
                413,
                f"an order has {len(too_long.items)} lines; at most "
                f"{self.settings.max_items} (serving.max_items)",
            )
        results = await self.running.batcher.submit(orders)
        problem = next((r for r in results if isinstance(r, Unscorable)), None)
        if problem is not None:
            raise HTTPException(404, problem.reason)
        now = datetime.now(UTC).replace(tzinfo=None)
        latency_ms = (time.perf_counter() - started) * 1000
        predictions, logged, mode = [], [], self.rollout.mode
        for order, scored in zip(orders, results, strict=True):
            request_id = order.request_id or uuid.uuid4().hex
            row, products = scored.input.features, scored.input.product_features
            predictions.append(
                Prediction(
                    request_id=request_id,
                    return_probability=scored.probability,
                    model_name=scored.model.name,
                    model_version=scored.model.version,
                    served_by=scored.served_by,
                    features=row,
                    product_features={str(k): v for k, v in products.items()},
                )
            )
            logged.append(
                record(
                    request_id,
                    now,
                    endpoint,
                    scored.model.name,
                    scored.model.version,
                    order.model_dump(),
                    row,
                    products,
                    scored.probability,
                    latency_ms,
                    rollout=mode,
                    served_by=scored.served_by,
                    shadow=scored.shadow,
                )
            )
            self.metrics.answers.labels(scored.served_by).inc()
            if scored.shadow is not None:
                self.metrics.shadow_scores.inc()
        self.running.log.append(logged)
        self.metrics.predictions.inc(len(predictions))
        return predictions

    def rollout_state(self) -> RolloutState:
        champion, challenger = self.champion.current, self.challenger.current
        return RolloutState(
            mode=self.rollout.mode,
            canary_share=self.rollout.canary_share,
            champion_version=champion.version if champion else None,
            challenger_version=challenger.version if challenger else None,
        )

    def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {"model": self.champion.current is not None}
        features = self.running.features
        try:
            features.store.get_online_features(
                features=features.product_refs[:1], entity_rows=[{"product_id": 0}]
            )
            checks["online_store"] = True
        except Exception as error:  # the store is down or misconfigured: not ready
            checks["online_store"] = f"unreachable: {error}"
        checks["ready"] = checks["model"] and checks["online_store"] is True
        if self.champion.current:
            checks["model_version"] = self.champion.current.version
        checks["rollout"] = self.rollout_state().model_dump()
        return checks


@dataclass(frozen=True)
class _Running:
    features: OrderFeatures
    log: InferenceLog
    batcher: MicroBatcher


def create_app(
    settings: ServingSettings,
    champion: AliasedModel,
    features: Callable[[], OrderFeatures],
    engine: LakeEngine,
    challenger: AliasedModel | None = None,
) -> FastAPI:
    """The app over a ``ScoringService``: routes, token check, metrics and error bodies.
    ``challenger`` (the registry's ``challenger`` alias) takes part as the rollout says."""
    service = ScoringService(
        settings,
        champion,
        challenger or AliasedModel(champion.client, champion.name, CHALLENGER),
        features,
        engine,
        rollout=Rollout(settings.rollout, settings.canary_share),
    )

    async def poll_models() -> None:
        while True:
            await asyncio.sleep(settings.reload_seconds)
            try:
                await asyncio.to_thread(service.refresh_models)
            except Exception:
                log.exception("model reload failed; still serving the loaded versions")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
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
            service.stop()

    app = FastAPI(
        title="lakehouse scoring",
        version="1",
        description="Return-risk scoring with online feature lookup. " + __doc__,
        lifespan=lifespan,
    )
    app.state.service = service
    bearer = HTTPBearer(auto_error=False)

    def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if settings.token is None:
            return
        expected = settings.token.get_secret_value()
        if credentials is None or not hmac.compare_digest(
            credentials.credentials.encode(), expected.encode()
        ):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input, which fails to encode for NaN, Infinity or
        # text that is not valid Unicode (a 500): name the field and the rule instead.
        return JSONResponse(status_code=422, content={"detail": validation_problems(error)})

    @app.middleware("http")
    async def count(request: Request, call_next: Callable) -> Response:
        started = time.perf_counter()
        status = 500  # what the client gets when the handler raises
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        try:
            if length > settings.max_body_bytes:
                response: Response = JSONResponse(
                    status_code=413,
                    content={
                        "detail": f"body of {length} bytes; at most {settings.max_body_bytes} "
                        "(serving.max_body_bytes)"
                    },
                )
            else:
                response = await call_next(request)
            status = response.status_code
            return response
        finally:  # every response is counted, also one that raised (the error-rate objective)
            path = getattr(request.scope.get("route"), "path", "unmatched")
            service.metrics.requests.labels(path, str(status)).inc()
            service.metrics.latency.labels(path).observe(time.perf_counter() - started)

    @app.post(
        "/v1/predict",
        response_model=Prediction,
        responses=ERRORS,
        dependencies=[Depends(authorized)],
        summary="Score one order",
    )
    async def predict(order: Order) -> Prediction:
        return (await service.predict([order], "predict"))[0]

    @app.post(
        "/v1/predict/batch",
        response_model=BatchPrediction,
        responses=ERRORS,
        dependencies=[Depends(authorized)],
        summary="Score many orders in one call",
    )
    async def predict_batch(batch: BatchRequest) -> BatchPrediction:
        if len(batch.orders) > settings.max_batch:
            raise HTTPException(
                413,
                f"{len(batch.orders)} orders in one batch; at most {settings.max_batch} (serving.max_batch)",
            )
        return BatchPrediction(predictions=await service.predict(batch.orders, "batch"))

    @app.post(
        "/v1/reload",
        dependencies=[Depends(authorized)],
        responses={
            **ERRORS,
            409: {
                "model": Problem,
                "description": "the new champion or challenger is not a skops model: refused",
            },
        },
        summary="Load the champion and challenger now if their aliases moved",
    )
    async def reload() -> dict[str, Any]:
        try:
            changed = await asyncio.to_thread(service.refresh_models)
        except UntrustedModelError as refused:  # the loaded version keeps serving
            raise HTTPException(409, str(refused)) from refused
        state = service.rollout_state()
        return {
            "changed": changed,
            "model_version": state.champion_version,
            "challenger_version": state.challenger_version,
        }

    @app.get("/v1/rollout", response_model=RolloutState, summary="How the challenger takes part")
    async def get_rollout() -> RolloutState:
        return service.rollout_state()

    @app.put(
        "/v1/rollout",
        response_model=RolloutState,
        dependencies=[Depends(authorized)],
        responses=ERRORS,
        summary="Change the rollout mode or canary share (no restart)",
    )
    async def put_rollout(change: RolloutChange) -> RolloutState:
        service.set_rollout(Rollout(change.mode, change.canary_share))
        log.info("rollout: %s, canary share %s", change.mode, change.canary_share)
        return service.rollout_state()

    @app.get("/health", summary="The process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        summary="A champion is loaded and the online store answers",
        responses={503: {"model": Problem}},
    )
    async def ready(response: Response) -> dict[str, Any]:
        checks = service.readiness()
        response.status_code = 200 if checks["ready"] else 503
        return checks

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
