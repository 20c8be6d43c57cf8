"""The scoring API (FastAPI). `lakehouse serve` runs it under uvicorn on 127.0.0.1.

Every online data product has its routes under /v1/models/<product>/ (predict, predict/batch,
rollout, reload) with the request body its declaration defines; /v1/predict, /v1/rollout and
/v1/reload are the same routes of the default product (serving.default_product). Unknown
entities get 404 (no fallback score: a made-up customer id must not be scored as if it were a
new one); malformed bodies get 422 naming the field (also for numbers that are not finite and
text that is not valid Unicode); batches larger than ``serving.max_batch``, requests with more
than ``serving.max_items`` child rows and bodies over ``serving.max_body_bytes`` get 413.
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
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from feast import FeatureStore
from mlflow import MlflowClient
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.products.spec import Product
from lakehouse_assets.registry.promotion import CHALLENGER, CHAMPION, UntrustedModelError
from lakehouse_assets.runtime import is_loopback
from lakehouse_assets.serving.batching import MicroBatcher
from lakehouse_assets.serving.inference_log import InferenceLog, log_schema, record
from lakehouse_assets.serving.requests import LINES, RequestModels, request_models
from lakehouse_assets.serving.schemas import (
    BatchPrediction,
    ModelState,
    Prediction,
    Problem,
    RolloutChange,
    RolloutState,
    validation_problems,
)
from lakehouse_assets.serving.scoring import (
    ROLLOUT_MODES,
    AliasedModel,
    ProductFeatures,
    Rollout,
    Scored,
    Unscorable,
    UnservableModelError,
    score_requests,
)
from lakehouse_assets.settings import ServingSettings

log = logging.getLogger(__name__)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong bearer token (exposed service)"},
    404: {"model": Problem, "description": "unknown entity: no online features"},
    413: {
        "model": Problem,
        "description": "too many requests in the batch or child rows in a request, "
        "or a body larger than serving.max_body_bytes",
    },
    503: {"model": Problem, "description": "no champion model loaded yet"},
}
REFUSED = (UntrustedModelError, UnservableModelError)  # a version that is not loaded


def check_exposure(host: str, settings: ServingSettings) -> None:
    """Refuse to serve beyond loopback without a token."""
    if not is_loopback(host) and settings.token is None:
        raise SystemExit(
            f"refusing to bind {host} without a token: set LAKEHOUSE_SERVING__TOKEN "
            "(every scoring call must then send `Authorization: Bearer <token>`)"
        )


class Metrics:
    """The service's Prometheus metrics, in a registry of their own, labelled by product."""

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
        self.predictions = Counter(
            "lakehouse_serving_predictions", "requests scored", ["product"], registry=self.registry
        )
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
            ["product", "mode"],
            registry=self.registry,
        )
        self.canary_share = Gauge(
            "lakehouse_serving_canary_share",
            "share of entities the challenger answers in canary mode",
            ["product"],
            registry=self.registry,
        )
        self.answers = Counter(
            "lakehouse_serving_answers",
            "requests answered, by product and by which model",
            ["product", "served_by"],
            registry=self.registry,
        )
        self.shadow_scores = Counter(
            "lakehouse_serving_shadow_scores",
            "requests scored by the model that did not answer",
            ["product"],
            registry=self.registry,
        )

    def show(self, served: "ProductService") -> None:
        """A product's loaded versions and rollout, as gauges."""
        champion, challenger, rollout = served.champion, served.challenger, served.rollout
        if champion.current:
            self.model_version.labels(champion.name).set(champion.current.version)
        self.challenger_version.labels(challenger.name).set(
            challenger.current.version if challenger.current else 0
        )
        for mode in ROLLOUT_MODES:
            self.rollout_mode.labels(served.product.name, mode).set(1 if mode == rollout.mode else 0)
        self.canary_share.labels(served.product.name).set(rollout.canary_share)


@dataclass
class ProductService:
    """One served product: its champion and challenger, rollout, request bodies and, while the
    app runs, its online feature lookup and micro-batcher."""

    product: Product
    champion: AliasedModel
    challenger: AliasedModel
    requests: RequestModels
    rollout: Rollout
    features: ProductFeatures | None = None
    batcher: MicroBatcher | None = None

    @property
    def name(self) -> str:
        return self.product.name

    def refresh(self) -> bool:
        """Both aliases; a failure of one leaves the other (and the loaded versions) serving. A
        refused version (not skops, or needing request columns the service lacks) is reported
        after both were tried."""
        changed, refused = False, None
        for model in (self.champion, self.challenger):
            try:
                changed = model.refresh() or changed
            except REFUSED as error:
                refused = refused or error
            except Exception:
                log.exception("%s %s reload failed; still serving the loaded version", self.name, model.alias)
        if refused is not None:
            raise refused
        return changed

    def score(self, requests: list[dict[str, Any]]) -> list[Scored | Unscorable]:
        """Lookup and scoring of the requests of every call in a micro-batch."""
        champion, challenger, rollout = self.champion.current, self.challenger.current, self.rollout
        if champion is None:  # every request of the batch gets the 503
            raise HTTPException(503, f"no {self.champion.name}@champion in the registry yet")
        if self.features is None:
            raise RuntimeError("the scoring service has not started")
        loaded = [m for m in (champion, challenger) if m is not None]
        found = self.features.lookup(requests, loaded)
        entities = [r[self.product.request_keys[0]] for r in requests]
        return score_requests(found, entities, champion, challenger, rollout)

    def state(self, path: str) -> ModelState:
        champion, challenger = self.champion.current, self.challenger.current
        return ModelState(
            name=self.name,
            task=self.product.spec.task,
            path=path,
            champion_version=champion.version if champion else None,
            challenger_version=challenger.version if challenger else None,
            mode=self.rollout.mode,
            canary_share=self.rollout.canary_share,
        )

    def rollout_state(self) -> RolloutState:
        champion, challenger = self.champion.current, self.challenger.current
        return RolloutState(
            mode=self.rollout.mode,
            canary_share=self.rollout.canary_share,
            champion_version=champion.version if champion else None,
            challenger_version=challenger.version if challenger else None,
        )


@dataclass
class ScoringService:
    """The service's state and what its routes do. ``open_store`` opens the online store (at
    start, in the server process); the lookups, the inference log and the micro-batchers exist
    while the app runs (``start`` .. ``stop``)."""

    settings: ServingSettings
    products: dict[str, ProductService]
    open_store: Callable[[], FeatureStore]
    engine: LakeEngine
    metrics: Metrics = field(default_factory=Metrics)
    _log: InferenceLog | None = None

    def start(self) -> None:
        store = self.open_store()
        for served in self.products.values():
            for model in (served.champion, served.challenger):
                try:
                    model.refresh()
                except REFUSED:
                    log.exception("%s %s refused; serving without it", served.name, model.alias)
            self.metrics.show(served)
            served.features = ProductFeatures(store, served.product)
            served.batcher = MicroBatcher(
                served.score, self.settings.batch_window_ms / 1000, max_items=self.settings.max_batch
            )
        schema = log_schema(*(s.product for s in self.products.values()))
        self._log = InferenceLog(self.engine, schema, self.settings.log_flush_seconds)

    def stop(self) -> None:
        if self._log is not None:
            self._log.close()  # nothing queued is lost on shutdown

    @property
    def log(self) -> InferenceLog:
        if self._log is None:
            raise RuntimeError("the scoring service has not started")
        return self._log

    def refresh_models(self, served: ProductService | None = None) -> bool:
        """The aliases of one product, or of every product; a refusal is raised after all were tried."""
        changed, refused = False, None
        for one in [served] if served else list(self.products.values()):
            try:
                changed = one.refresh() or changed
            except REFUSED as error:
                refused = refused or error
            self.metrics.show(one)
        if refused is not None:
            raise refused
        return changed

    def set_rollout(self, served: ProductService, rollout: Rollout) -> None:
        served.rollout = rollout  # one swap: no request sees a mixed state
        self.metrics.show(served)

    async def predict(
        self, served: ProductService, bodies: list[BaseModel], endpoint: str
    ) -> list[Prediction]:
        started = time.perf_counter()
        requests = [b.model_dump() for b in bodies]
        too_long = next((r for r in requests if len(r.get(LINES) or []) > self.settings.max_items), None)
        if too_long is not None:
            raise HTTPException(
                413,
                f"a request has {len(too_long[LINES])} child rows ({LINES}); at most "
                f"{self.settings.max_items} (serving.max_items)",
            )
        if served.batcher is None:
            raise RuntimeError("the scoring service has not started")
        results = await served.batcher.submit(requests)
        problem = next((r for r in results if isinstance(r, Unscorable)), None)
        if problem is not None:
            raise HTTPException(404, problem.reason)
        now = datetime.now(UTC).replace(tzinfo=None)
        latency_ms = (time.perf_counter() - started) * 1000
        predictions, logged, mode = [], [], served.rollout.mode
        for request, scored in zip(requests, results, strict=True):
            request_id = request.get("request_id") or uuid.uuid4().hex
            row, lines = scored.input.features, scored.input.line_features
            predictions.append(
                Prediction(
                    request_id=request_id,
                    prediction=scored.score,
                    model_name=scored.model.name,
                    model_version=scored.model.version,
                    served_by=scored.served_by,
                    features=row,
                    line_features={str(k): v for k, v in lines.items()},
                )
            )
            logged.append(
                record(
                    served.product,
                    request_id,
                    now,
                    endpoint,
                    scored.model,
                    request,
                    row,
                    lines,
                    scored.score,
                    latency_ms,
                    rollout=mode,
                    served_by=scored.served_by,
                    shadow=scored.shadow,
                )
            )
            self.metrics.answers.labels(served.name, scored.served_by).inc()
            if scored.shadow is not None:
                self.metrics.shadow_scores.labels(served.name).inc()
        self.log.append(logged)
        self.metrics.predictions.labels(served.name).inc(len(predictions))
        return predictions

    def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {
            "models": {n: s.champion.current is not None for n, s in self.products.items()},
        }
        checks["model"] = all(checks["models"].values())
        try:
            next(iter(self.products.values())).features.probe()  # type: ignore[union-attr]
            checks["online_store"] = True
        except Exception as error:  # the store is down or misconfigured: not ready
            checks["online_store"] = f"unreachable: {error}"
        checks["ready"] = checks["model"] and checks["online_store"] is True
        checks["model_versions"] = {
            n: s.champion.current.version for n, s in self.products.items() if s.champion.current
        }
        checks["rollout"] = {n: s.rollout_state().model_dump() for n, s in self.products.items()}
        return checks


def add_product_routes(
    app: FastAPI,
    prefix: str,
    service: ScoringService,
    served: ProductService,
    authorized: Callable[..., None],
) -> None:
    """predict, predict/batch, reload and rollout of one product under ``prefix``, with its own
    request bodies (on the app itself: the metrics label requests by the full path)."""
    settings, name = service.settings, served.name
    single, batch_body = served.requests.single, served.requests.batch
    tags: list[str | Enum] = [name]

    async def predict(body: single) -> Prediction:  # type: ignore[valid-type]
        return (await service.predict(served, [body], "predict"))[0]

    async def predict_batch(batch: batch_body) -> BatchPrediction:  # type: ignore[valid-type]
        requests = batch.requests  # type: ignore[attr-defined]
        if len(requests) > settings.max_batch:
            raise HTTPException(
                413,
                f"{len(requests)} requests in one batch; at most {settings.max_batch} (serving.max_batch)",
            )
        return BatchPrediction(predictions=await service.predict(served, requests, "batch"))

    async def reload() -> dict[str, Any]:
        try:
            changed = await asyncio.to_thread(service.refresh_models, served)
        except REFUSED as refused:  # the loaded version keeps serving
            raise HTTPException(409, str(refused)) from refused
        state = served.rollout_state()
        return {
            "changed": changed,
            "model_version": state.champion_version,
            "challenger_version": state.challenger_version,
        }

    async def get_rollout() -> RolloutState:
        return served.rollout_state()

    async def put_rollout(change: RolloutChange) -> RolloutState:
        service.set_rollout(served, Rollout(change.mode, change.canary_share))
        log.info("%s rollout: %s, canary share %s", name, change.mode, change.canary_share)
        return served.rollout_state()

    guarded = [Depends(authorized)]
    refused: dict[int | str, dict[str, Any]] = {
        409: {
            "model": Problem,
            "description": "the new champion or challenger is refused (not a skops model, or "
            "it needs request columns the declaration does not send)",
        }
    }
    routes: list[tuple[str, str, Callable[..., Any], Any, str]] = [
        ("POST", "/predict", predict, Prediction, f"Score one {name} request"),
        ("POST", "/predict/batch", predict_batch, BatchPrediction, f"Score many {name} requests in one call"),
        (
            "POST",
            "/reload",
            reload,
            None,
            f"Load the {name} champion and challenger now if their aliases moved",
        ),
        ("GET", "/rollout", get_rollout, RolloutState, f"How the {name} challenger takes part"),
        ("PUT", "/rollout", put_rollout, RolloutState, f"Change the {name} rollout mode or canary share"),
    ]
    for method, path, endpoint, response, summary in routes:
        reading = method == "GET"  # reads need no token
        app.add_api_route(
            prefix + path,
            endpoint,
            methods=[method],
            response_model=response,
            responses={} if reading else {**ERRORS, **(refused if path == "/reload" else {})},
            dependencies=[] if reading else guarded,
            summary=summary,
            description=served.product.spec.description if path == "/predict" else "",
            tags=tags,
        )


def create_app(
    settings: ServingSettings,
    products: list[Product],
    client: MlflowClient,
    open_store: Callable[[], FeatureStore],
    engine: LakeEngine,
) -> FastAPI:
    """The app over a ``ScoringService`` of ``products``: routes per product, token check,
    metrics and error bodies. Each product's challenger (the registry's ``challenger`` alias)
    takes part as its rollout says."""
    if not products:
        raise ValueError("no product to serve: declare serving.online: true in a data product")
    served = {
        p.name: ProductService(
            p,
            AliasedModel(client, p.spec.model_name, CHAMPION, p.spec.features.request),
            AliasedModel(client, p.spec.model_name, CHALLENGER, p.spec.features.request),
            request_models(p, settings.max_items, settings.max_batch),
            Rollout(settings.rollout, settings.canary_share),
        )
        for p in products
    }
    service = ScoringService(settings, served, open_store, engine)
    default = served.get(settings.default_product) or served[products[0].name]

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
        # Everything loaded so far (libraries, models, store) lives as long as the process: keep
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

    names = ", ".join(f"`{n}`" for n in served)
    app = FastAPI(
        title="lakehouse scoring",
        version="1",
        description=f"Scoring of the online data products ({names}) with online feature lookup. "
        f"The routes under /v1/ without a product serve `{default.name}`. " + (__doc__ or ""),
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

    for one in served.values():
        add_product_routes(app, f"/v1/models/{one.name}", service, one, authorized)
    # the unversioned routes of the default product (the API before products had routes)
    add_product_routes(app, "/v1", service, default, authorized)

    @app.get("/v1/models", response_model=list[ModelState], summary="The served products")
    async def models() -> list[ModelState]:
        return [s.state(f"/v1/models/{n}/predict") for n, s in served.items()]

    @app.get("/health", summary="The process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        summary="Every served product has its champion loaded and the online store answers",
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
