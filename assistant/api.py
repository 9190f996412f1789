"""The HTTP side of Dossier: a FastAPI app with the JSON API, the wiki widget script, and the chat mounted at "/".

One `Assistant` serves every request of the process. The layer is thin: it validates input, calls the
`Assistant` or the `Library`, and turns Dossier's errors into JSON `{"error": "..."}` with a status code.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import anyio
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.access import OPEN_API_PATHS, Access, ChatGuard, LoginThrottle, token_refusal
from assistant.chain import Assistant
from assistant.errors import (
    BackendUnavailableError,
    BadQuestionError,
    ConfigError,
    DossierError,
    EmptyStoreError,
    NotFoundError,
    ReadOnlyError,
    UnsupportedFileError,
    UploadTooLargeError,
)
from assistant.filters import Filters
from assistant.ingest_worker import IngestWorker
from assistant.library import ALLOWED_SUFFIXES, Library, Upload, upload_fields
from assistant.models import Answer, AnswerSentence, ArticleRecord, Citation, Passage, file_name, is_file_path
from assistant.serving import announced
from assistant.settings import Settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
DEMO_CORPUS = Path(__file__).resolve().parents[1] / "examples" / "articles"
BEARER = HTTPBearer(auto_error=False, description="DOSSIER_API_TOKEN, when the server sets one.")
UPLOAD_PATH = "/api/articles"  # POST: uploads, whose bodies have their own, larger limit (upload_limit)
CATCH_ALL = "/api/{rest:path}"  # answers for paths no API route has (404) or methods the route does not take (405)
DOCS_ASSETS = "/docs-assets"  # Swagger UI's and ReDoc's scripts and styles, from the fastapi-offline package
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
OTHER_METHODS = ("OPTIONS", "TRACE", "CONNECT", "QUERY")  # taken by no API route: always 405 on an API path
# The chat's scripts and styles: Gradio's build names each file after a hash of its content, so a browser may keep
# it for good. Gradio sends no Cache-Control for them, and a returning visitor's browser asked for all ~85 again.
HASHED_ASSETS = "/assets/"
HASHED_ASSET_CACHE = "public, max-age=31536000, immutable"
# Threads that run uploads and removals (the Library's lock lets one write at a time anyway). They come from a
# limiter of their own, so writes waiting for the lock wait in the event loop, not on the threads that answer questions.
WRITE_THREADS = 1
UPLOAD_BODY = "Body_upload_api_articles_post"  # FastAPI's name for the upload form's schema
UPLOAD_HELP = f"Article files ({', '.join(sorted(ALLOWED_SUFFIXES))}), each at most max_upload_mb."

# One server-sent event of /api/ask/stream (OpenAPI 3.1 describes each event of a text/event-stream with `schema`).
SSE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["token", "answer", "error"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": '`{"text": piece}` (token), the Answer JSON (answer) or `{"error": message}` (error).',
        },
    },
}

# Status codes of Dossier's errors; anything else a DossierError says is a bad request.
STATUS = [
    (BadQuestionError, 400),
    (NotFoundError, 404),
    (ReadOnlyError, 403),
    (EmptyStoreError, 409),
    (UploadTooLargeError, 413),
    (UnsupportedFileError, 415),
    (BackendUnavailableError, 503),
    (ConfigError, 500),
]


# -- the JSON shapes (the answer's are derived from models.py, and what is sent is validated by them) ---


# Request bodies take JSON's own types only: `"k": "5"`, `"include_retrieved": 0` or `"since": 0` are refused
# (400, naming the field), as the schema says, instead of being coerced into something the client did not write.
# Days are 'YYYY-MM-DD' strings, and a whole number may be written 5.0 (JSON Schema's integers include it).
STRICT = ConfigDict(strict=True)


def _iso_day(value: object) -> object:
    """JSON has no dates: a day comes as a 'YYYY-MM-DD' string, read here; anything else is left to be refused."""
    return date.fromisoformat(value) if isinstance(value, str) else value


Day = Annotated[date, BeforeValidator(_iso_day)]
# A filter's day stays text here: `Filters.parse` reads it, with the message every door gives.
DayText = Annotated[str, Field(json_schema_extra={"format": "date"})]


def _whole_number(value: object) -> object:
    """JSON Schema counts 5.0 as an integer, so it is taken as 5; 5.5, "5" and true are left to be refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# The bounds come before the validator: after it, pydantic writes them into the schema as "ge"/"le", which JSON
# Schema does not know, and the schema allowed the k=0 that the server refused.
PassageCount = Annotated[int, Field(ge=1, le=50), BeforeValidator(_whole_number)]


class Turn(BaseModel):
    model_config = STRICT
    role: Literal["user", "assistant"] = Field(description="Who said it.")
    content: str = Field(description="What was said (for the assistant: the answer text).")


class FiltersIn(BaseModel):
    model_config = STRICT
    sources: list[str] = Field(default_factory=list, description="Only articles from these outlets.")
    article_ids: list[str] = Field(default_factory=list, description="Only these articles.")
    since: DayText | None = Field(None, description="Only articles published on or after this day (YYYY-MM-DD).")
    until: DayText | None = Field(None, description="Only articles published on or before this day (YYYY-MM-DD).")

    def to_filters(self) -> Filters:
        return Filters.parse(self.sources, self.article_ids, self.since, self.until)


class AskIn(BaseModel):
    model_config = STRICT
    # The schema states what the server accepts (a question with a visible character, of at most max_question_chars
    # once create_app fills that in), while the server checks it itself, with its own messages naming the setting.
    question: str = Field(
        description="The question, e.g. 'What figures did Hamas report?'.",
        examples=["What figures did Hamas report?"],
        json_schema_extra={"minLength": 1, "pattern": r"[^\s\x00-\x1f\x7f-\x9f]"},
    )
    history: list[Turn] = Field(
        default_factory=list, description="Earlier turns, oldest first, so follow-up questions work."
    )
    filters: FiltersIn = Field(
        default_factory=lambda: FiltersIn(), description="Restrict the articles answers may come from."
    )
    k: PassageCount | None = Field(None, description="Passages to answer from (default: the server's k).")
    as_of: Day | None = Field(
        None, description="Answer as if today were this day; articles published later are never cited."
    )
    include_retrieved: bool = Field(
        False, description="Also send every retrieved passage in `retrieved` (some 20 KB); otherwise it is empty."
    )
    answerer: str | None = Field(
        None,
        description="'extractive' or the server's configured LLM (see /api/health's `answerers`); default: the LLM if configured.",
    )

    def answer(self, answer: Answer) -> dict[str, Any]:
        """The answer's JSON as this request asked for it."""
        return answer.to_dict() if self.include_retrieved else dataclasses.replace(answer, retrieved=[]).to_dict()

    def options(self) -> dict[str, Any]:
        """The keyword arguments of `Assistant.ask` and `.stream` besides the question."""
        history = [turn.model_dump() for turn in self.history]
        return {
            "history": history,
            "k": self.k,
            "filters": self.filters.to_filters(),
            "as_of": self.as_of,
            "answerer": self.answerer,
        }


def schema_of(
    record: type, name: str, nested: dict[type, type[BaseModel]] | None = None, leave_out: tuple[str, ...] = ()
) -> type[BaseModel]:
    """The JSON shape of a record of `models.py`, derived from its dataclass so the schema cannot drift from it.

    Every field is required (`to_dict()` always sends it), in the record's order, with the `description` of its
    metadata; a tuple goes out as a JSON array, and a record inside (a `Citation` in an `Answer`) as the model
    `nested` gives for it. `leave_out` names fields the JSON does not carry.
    """
    nested = nested or {}
    hints = get_type_hints(record)

    def json_type(hint: Any) -> Any:
        origin, args = get_origin(hint), get_args(hint)
        if hint in nested:
            return nested[hint]
        if origin in (tuple, list):
            return list[json_type(args[0])]  # type: ignore[misc]
        return hint

    fields: dict[str, Any] = {
        field.name: (json_type(hints[field.name]), Field(description=field.metadata.get("description")))
        for field in dataclasses.fields(record)
        if field.name not in leave_out
    }
    model: type[BaseModel] = create_model(name, **fields)
    return model


CitationOut = schema_of(Citation, "CitationOut")
SentenceOut = schema_of(AnswerSentence, "SentenceOut")
PassageOut = schema_of(Passage, "PassageOut")
AnswerOut = schema_of(Answer, "AnswerOut", {Citation: CitationOut, AnswerSentence: SentenceOut, Passage: PassageOut})
ArticleOut = schema_of(ArticleRecord, "ArticleOut", leave_out=ArticleRecord.TEXT_FIELDS)


class ArticlesOut(BaseModel):
    count: int
    articles: list[ArticleOut]  # type: ignore[valid-type]  # a model made at run time is no type to mypy


class UploadResultOut(BaseModel):
    name: str = Field(description="The file name the client sent (never used as a path).")
    status: Literal["added", "updated", "unchanged", "duplicate", "skipped"]
    articles: list[str] = Field(
        description="Ids of the articles the file holds, 'upload/<stored name>[/<record>]' (or, for a duplicate, "
        "of the stored copy)."
    )
    reason: str = Field(description="Why the file (or some of its records) was skipped.")
    stored_as: str = Field(
        description="The file's name in the server's upload folder, which its article ids are made from (never a path)."
    )
    notes: list[str] = Field(
        description="What the server changed while reading the file, e.g. an id it asked for and the one it got."
    )


class UploadOut(BaseModel):
    files: list[UploadResultOut]


class RemovedOut(BaseModel):
    removed: str
    chunks: int


class HealthOut(BaseModel):
    status: Literal["ok"]
    articles: int
    answerer: str
    answerers: list[str] = Field(description="The answerers a question may choose (`answerer` in /api/ask).")
    read_only: bool
    version: str


class ErrorOut(BaseModel):
    error: str = Field(description="What went wrong and what to do.")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


# -- the app ---------------------------------------------------------------------------------------


def create_app(settings: Settings, assistant: Assistant | None = None, mount_chat: bool = True) -> FastAPI:
    """The whole server: `/api/*`, `/widget.js`, `/embed`, and the Gradio chat at `/`.

    >>> app = create_app(Settings(store="data/store"))          # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=7860)            # doctest: +SKIP
    """
    assistant = assistant or Assistant.from_settings(settings)
    if settings.ingest_worker and assistant.stored.worker is None:
        assistant.stored.worker = IngestWorker(settings)
    library = Library(assistant.stored, settings)
    app = _new_app()
    app.state.assistant = assistant
    app.state.library = library
    app.state.writes = anyio.CapacityLimiter(WRITE_THREADS)
    _add_middleware(app, settings)
    _add_error_handlers(app, settings)
    _add_docs(app)
    _document_this_server(app, settings, assistant)
    app.include_router(_api(settings, assistant, library, app.state.writes))
    _add_health(app, settings, assistant)
    _add_api_fallback(app)
    _add_widget(app)
    if mount_chat:
        _mount_chat(app, settings, assistant, library)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    worker = app.state.assistant.stored.worker
    if worker is not None:
        await anyio.to_thread.run_sync(worker.close)


def _new_app() -> FastAPI:
    return FastAPI(
        lifespan=_lifespan,
        title="Dossier",
        version=_version(),
        description=(
            "Ask questions of news articles; every answer cites the exact passages it rests on. "
            "With DOSSIER_API_TOKEN set, every /api route except /api/health needs `Authorization: Bearer TOKEN`. "
            'Errors are JSON objects `{"error": "..."}`.'
        ),
        docs_url=None,  # served by _add_docs, from files installed with Dossier instead of a CDN
        redoc_url=None,
    )


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Error pages, body-size limits, the API token and CORS, around every route."""
    # Outermost last: CORS wraps everything, so even an early 401, 413 or a 500 carries its headers for the wiki's
    # browser; ApiGuard checks the token and the size of JSON bodies before any body is read.
    app.add_middleware(InternalErrors)
    app.add_middleware(DeclaredSizeLimit, limit=upload_limit(settings), path=UPLOAD_PATH, message=_too_large(settings))
    app.add_middleware(ApiGuard, token=settings.api_token, limit=settings.max_request_kb * 1024)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )


def _add_health(app: FastAPI, settings: Settings, assistant: Assistant) -> None:
    @app.get("/api/health", response_model=HealthOut, tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and what this server answers with (no token needed, for load balancers)."""
        return {
            "status": "ok",
            "articles": assistant.store.article_count(),
            "answerer": assistant.answerer_name,
            "answerers": assistant.answerers,
            "read_only": settings.read_only,
            "version": _version(),
        }


def _add_api_fallback(app: FastAPI) -> None:
    """404 for an /api path no route has, 405 (with Allow) for a method its route does not take."""

    # Every method, or the others fall through to the chat's mount, which answers 404 (not 405) for /api paths.
    @app.api_route(CATCH_ALL, methods=[*HTTP_METHODS, *OTHER_METHODS], include_in_schema=False)
    def unknown(rest: str, request: Request) -> None:
        # Routing falls through to here for an existing route asked with the wrong method too: that is a 405.
        if allowed := _allowed_methods(app, request.scope):
            raise HTTPException(
                405,
                f"{request.method} is not allowed on /api/{rest}: use {' or '.join(allowed)} (see /docs)",
                headers={"Allow": ", ".join(allowed)},
            )
        raise HTTPException(404, f"no API route /api/{rest}: see /docs")


def _add_widget(app: FastAPI) -> None:
    """The wiki widget's script, and /embed for the compact chat."""

    @app.get("/widget.js", include_in_schema=False)
    def widget() -> FileResponse:
        return FileResponse(
            STATIC / "widget.js", media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"}
        )

    @app.get("/embed", include_in_schema=False)
    def embed() -> RedirectResponse:
        """The compact chat for iframes (also reachable as /?embed=1)."""
        return RedirectResponse("/?embed=1")


def _mount_chat(app: FastAPI, settings: Settings, assistant: Assistant, library: Library) -> None:
    """The Gradio chat at "/", behind its login guard."""
    import gradio as gr

    from assistant.ui import CSS, HEAD, build_ui

    chat = build_ui(assistant, library, settings)
    gr.mount_gradio_app(
        app,
        chat,
        path="/",
        auth=settings.auth_pair,
        auth_message="Dossier: log in to ask the articles.",
        css=CSS,
        head=HEAD,
        footer_links=[],  # ui.API_FOOTER points to /api/ask and /docs instead of Gradio's internal events
        run_history=False,
        max_file_size=int(settings.max_upload_mb * 1024 * 1024),
        ssr_mode=False,
        show_error=True,
    )
    # mount_gradio_app leaves `has_launched` False, and until it is set Gradio skips its own check that an
    # event's file inputs are files it received (processing_utils._check_allowed): it would copy any server
    # path a caller names into its cache and hand it to the event. The chat's upload handler checks again.
    chat.has_launched = True
    _guard_chat(app, Access.from_settings(settings), LoginThrottle.from_settings(settings))


def _add_docs(app: FastAPI) -> None:
    """The API's docs at /docs (Swagger UI) and /redoc, with their scripts and styles served from here.

    FastAPI's own pages load them from a CDN, and so are blank where the server or its readers are offline;
    the package fastapi-offline ships the same files, which `DOCS_ASSETS` serves.
    """
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).with_name("static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    openapi = app.openapi_url or "/openapi.json"
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi,
            title=f"{app.title} - API docs",
            oauth2_redirect_url=root + redirect,
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @app.get(redirect, include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi,
            title=f"{app.title} - API docs",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def _document_this_server(app: FastAPI, settings: Settings, assistant: Assistant) -> None:
    """Put this server's own limits into its OpenAPI schema: the longest question, its answerers, files per upload.

    They are settings, so `AskIn` cannot state them; without them a schema-valid question could still be
    refused with 400, and the schema would not tell clients (or schemathesis, see `make fuzz`) what is valid.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            ask = schema["components"]["schemas"]["AskIn"]["properties"]
            ask["question"]["maxLength"] = settings.max_question_chars
            ask["answerer"]["anyOf"] = [{"type": "string", "enum": assistant.answerers}, {"type": "null"}]
            upload = schema["components"]["schemas"][UPLOAD_BODY]
            upload["properties"]["files"]["maxItems"] = settings.max_upload_files
            upload["additionalProperties"] = False  # other form fields count against form_limits' max_fields
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _guard_chat(app: FastAPI, access: Access, throttle: LoginThrottle) -> None:
    """Put `ChatGuard` (with its login throttle) between the server and the Gradio app that mount_gradio_app mounted at "/".

    mount_gradio_app mounts Gradio's app itself; wrapping that mount (rather than the whole server) keeps the
    guard off Dossier's own routes (/api/*, /docs, /widget.js), which have their own.
    """
    from gradio.routes import App as GradioApp

    mount = next(route for route in app.routes if isinstance(route, Mount) and isinstance(route.app, GradioApp))
    mount.app = ImmutableAssets(ChatGuard(mount.app, access, throttle))


def _api(settings: Settings, assistant: Assistant, library: Library, writes: anyio.CapacityLimiter) -> APIRouter:
    """The /api routes behind the token (when one is set): questions, then articles."""
    router = _guarded_router(settings)
    _add_question_routes(router, assistant)
    _add_article_routes(router, settings, library, writes)
    return router


def _guarded_router(settings: Settings) -> APIRouter:
    """An /api router whose routes need `settings.api_token` as a bearer token, when one is set."""

    def check_token(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
    ) -> None:
        # ApiGuard has already refused a request without the token, before reading its body; this check keeps the
        # routes closed if they are ever served without it, and `BEARER` documents the scheme in OpenAPI.
        refusal = token_refusal(request.headers.get("authorization", ""), settings.api_token)
        if refusal is not None:
            raise HTTPException(401, refusal.message, headers={"WWW-Authenticate": refusal.challenge})

    # The bearer scheme is declared (and checked here) only when a token is set, so the OpenAPI schema says what
    # this server asks for: an open server's schema requires no Authorization header.
    guarded = bool(settings.api_token)
    return APIRouter(
        prefix="/api",
        dependencies=[Depends(check_token)] if guarded else [],
        responses=_errors(401) if guarded else {},
    )


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            'Server-sent events: `event: token` with `{"text": piece}` as the answer is written, then one '
            "`event: answer` with the Answer JSON (what to show: verification may remove sentences). A failure "
            'after the stream began is sent as `event: error` with `{"error": message}`.'
        ),
        "content": {"text/event-stream": {"schema": SSE_EVENT}},
    },
    **_errors(400, 409, 503),
}


def _add_question_routes(router: APIRouter, assistant: Assistant) -> None:
    """POST /api/ask and /api/ask/stream."""

    @router.post("/ask", response_model=AnswerOut, tags=["questions"], responses=_errors(400, 409, 503))
    def ask(body: AskIn) -> dict[str, Any]:
        """Answer a question with numbered, verified citations (the JSON of `dossier ask --json`; `retrieved` is
        empty unless `include_retrieved` is true).

        Pass the earlier turns in `history` for follow-ups ("And what did Israel say?").
        """
        return body.answer(assistant.ask(body.question, **body.options()))  # sent as validated by AnswerOut

    @router.post("/ask/stream", tags=["questions"], responses=STREAM_RESPONSES)
    def ask_stream(body: AskIn) -> StreamingResponse:
        """Like /api/ask, streamed as server-sent events."""
        pieces = assistant.stream(body.question, **body.options())
        first = next(pieces)  # validation, retrieval and a first token happen here: errors still get their status code
        return StreamingResponse(
            _answer_events(body, itertools.chain([first], pieces)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def _answer_events(body: AskIn, pieces: Iterator[str | Answer]) -> Iterator[str]:
    """The server-sent events of a streamed answer: its pieces as `token`, the final answer, or an `error`."""
    try:
        for piece in pieces:
            if isinstance(piece, str):
                yield _sse("token", {"text": piece})
            else:
                yield _sse("answer", AnswerOut.model_validate(body.answer(piece)).model_dump(mode="json"))
    except DossierError as exc:
        yield _sse("error", {"error": str(exc)})


def _add_article_routes(router: APIRouter, settings: Settings, library: Library, writes: anyio.CapacityLimiter) -> None:
    """GET, POST (upload) and DELETE on /api/articles; writes run one at a time on `writes`."""

    @router.get("/articles", response_model=ArticlesOut, tags=["articles"])
    def articles() -> dict[str, Any]:
        """The stored articles, newest first."""
        records = library.articles()
        # Where the server keeps each file is its own business: the API names the file only.
        articles = [
            {**record.to_dict(), "url": "" if is_file_path(record.url) else record.url, "path": file_name(record.path)}
            for record in records
        ]
        return {"count": len(records), "articles": articles}

    # A declared Content-Length over the limit is refused up front (DeclaredSizeLimit); a chunked body is cut off
    # with 413 as it arrives (FastAPI's max_body_size): an oversized upload never fills the disk.
    @router.post(
        "/articles",
        response_model=UploadOut,
        tags=["articles"],
        responses=_errors(400, 403, 413, 415),
        max_body_size=upload_limit(settings),
        form_limits={"max_files": settings.max_upload_files, "max_fields": 10},
    )
    async def upload(
        files: Annotated[
            list[UploadFile],
            File(description=UPLOAD_HELP, json_schema_extra={"minItems": 1}),
        ],
        title: Annotated[str, Form(description="Title of every uploaded article.")] = "",
        outlet: Annotated[str, Form(description="Outlet (source) of every uploaded article.")] = "",
        published: Annotated[str, Form(description="Publication date of every uploaded article, YYYY-MM-DD.")] = "",
        url: Annotated[str, Form(max_length=2048, description="Link of every uploaded article (http or https).")] = "",
    ) -> dict[str, Any]:
        """Upload and ingest article files. One file over the size limit (413) or of another type (415) refuses the
        whole request; files are kept under server-chosen names, re-uploading a file updates its article. Uploaded
        articles get ids under 'upload/', never the id a file asks for (front matter `id:`, a JSON `id`). The
        optional form fields replace the title, outlet, date or link the files give (400 names a wrong one)."""
        fields = upload_fields(title=title, outlet=outlet, published=published, url=url)

        def add() -> list[dict[str, Any]]:
            uploads = [Upload(name=file.filename or "upload", size=_size(file), content=file.file) for file in files]
            return [result.to_dict() for result in library.add(uploads, fields=fields)]

        return {"files": await anyio.to_thread.run_sync(add, limiter=writes)}

    @router.delete(
        "/articles/{article_id:path}", response_model=RemovedOut, tags=["articles"], responses=_errors(403, 404)
    )
    async def remove(article_id: str) -> dict[str, Any]:
        """Remove an article and its chunks."""
        return {
            "removed": article_id,
            "chunks": await anyio.to_thread.run_sync(library.remove, article_id, limiter=writes),
        }


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods the app's routes take at this request's path (empty when no route but the catch-all has it).

    Each method is tried on every route (routers included with `include_router` too) through `matches` alone;
    mounts (the chat at "/") match every path and are left out.
    """
    routes = [r for r in app.router.routes if not isinstance(r, Mount) and getattr(r, "path", "") != CATCH_ALL]
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _size(file: UploadFile) -> int:
    if file.size is not None:
        return int(file.size)
    position = file.file.tell()
    file.file.seek(0, 2)
    size = file.file.tell()
    file.file.seek(position)
    return size


def _add_error_handlers(app: FastAPI, settings: Settings) -> None:
    @app.exception_handler(DossierError)
    def dossier_error(request: Request, exc: DossierError) -> JSONResponse:
        status = next((code for kind, code in STATUS if isinstance(exc, kind)), 400)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # FastAPI's own 413 (an upload's max_body_size) says nothing of the limits; ApiGuard's does.
        upload = exc.status_code == 413 and not isinstance(exc, BodyTooLargeError)
        message = _too_large(settings) if upload else str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"error": "bad request: " + "; ".join(problems)}, status_code=400)


def upload_limit(settings: Settings) -> int:
    """Bytes one upload request may carry: max_upload_files files of max_upload_mb each, plus multipart overhead."""
    return int(settings.max_upload_mb * 1024 * 1024) * settings.max_upload_files + 256 * 1024


def _too_large(settings: Settings) -> str:
    return (
        f"the upload is too large: at most {settings.max_upload_files} files of {settings.max_upload_mb:g} MB each "
        "(max_upload_files, max_upload_mb)"
    )


class InternalErrors:
    """Answer an unexpected exception with a JSON 500 (and log it) inside the CORS middleware.

    FastAPI's handler for `Exception` runs outside every middleware, so its 500 carried no CORS headers: the
    wiki's browser, allowed by the pre-flight, could not read the answer and saw a failed fetch instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched = _WatchedSend(send)
        try:
            await self.app(scope, receive, watched)
        except Exception:
            if watched.started:  # too late for another response (a stream broke off): uvicorn closes the connection
                raise
            log.exception("%s %s failed", scope["method"], scope["path"])
            response = JSONResponse({"error": "internal error: see the server log"}, status_code=500)
            await response(scope, receive, send)


class ImmutableAssets:
    """Mark the chat's content-hashed scripts and styles (`HASHED_ASSETS`) as cacheable for good.

    Outside `ChatGuard`, so a login page's assets are cached too; only a 200 is marked, never a refusal.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(HASHED_ASSETS):
            await self.app(scope, receive, send)
            return

        async def cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message = {**message, "headers": [*headers, (b"cache-control", HASHED_ASSET_CACHE.encode())]}
            await send(message)

        await self.app(scope, receive, cached)


class DeclaredSizeLimit:
    """Answer 413 (as JSON, without reading the body) to a POST on `path` whose Content-Length is over `limit`."""

    def __init__(self, app: ASGIApp, limit: int, path: str, message: str) -> None:
        self.app, self.limit, self.path, self.message = app, limit, path, message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(self.path):
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit:
                response = JSONResponse({"error": self.message}, status_code=413, headers={"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyTooLargeError(HTTPException):
    """A request body that grew past ApiGuard's limit while it arrived (raised from `receive`, so FastAPI's body
    parsing passes it on to the error handlers as the 413 it is)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message, headers={"Connection": "close"})


class ApiGuard:
    """ASGI middleware in front of `/api`: the token and the body size are checked before any body is read.

    - With a token set, a request to any `/api` route but `OPEN_API_PATHS` without a valid
      `Authorization: Bearer TOKEN` gets 401 at once; its body is never read.
    - Every other body (all but uploads, `POST UPLOAD_PATH`, limited by `DeclaredSizeLimit` and the route's
      max_body_size) may hold at most `limit` bytes: a larger declared Content-Length gets 413 at once, and a
      body sent without one (chunked) is counted as it arrives and refused with 413 once it passes the limit.

    Refusals are JSON `{"error": ...}` like the API's other errors, and close the connection, since the body
    they leave unread cannot be skipped cheaply.
    """

    def __init__(self, app: ASGIApp, token: str, limit: int) -> None:
        self.app, self.token, self.limit = app, token, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/api" or path.startswith("/api/")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if path not in OPEN_API_PATHS and scope["method"] != "OPTIONS":
            refusal = token_refusal(headers.get("authorization", ""), self.token)
            if refusal is not None:
                await _refuse(scope, receive, send, 401, refusal.message, {"WWW-Authenticate": refusal.challenge})
                return
        if scope["method"] == "POST" and path.rstrip("/") == UPLOAD_PATH:
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length", "")
        if length.strip().isdigit() and int(length) > self.limit:
            await _refuse(scope, receive, send, 413, self._too_large(f"declares {int(length):,} bytes"))
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body's bytes; past the limit it is answered with 413 instead."""
        received = 0
        watched = _WatchedSend(send)

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLargeError(self._too_large(f"sent over {self.limit:,} bytes"))
            return message

        try:
            await self.app(scope, counting_receive, watched)
        except BodyTooLargeError as exc:  # a route outside FastAPI's error handlers
            if watched.started:
                raise
            await _refuse(scope, receive, send, 413, str(exc.detail))

    def _too_large(self, what: str) -> str:
        return f"the request body is too large: it {what}; the limit is {self.limit // 1024} KB (max_request_kb)"


class _WatchedSend:
    """A `send` that remembers whether the response has started: after that no other response can be sent."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    response = JSONResponse({"error": message}, status_code=status, headers={**(headers or {}), "Connection": "close"})
    await response(scope, receive, send)


def _version() -> str:
    try:
        return version("dossier")
    except PackageNotFoundError:
        return "0"


# -- running it ------------------------------------------------------------------------------------


def cors_summary(settings: Settings) -> str:
    """Which other sites' pages may call the API from a browser (the widget). Printed when the server starts."""
    if not settings.cors_origin_list:
        return (
            "browsers on other sites (the wiki widget): no other site may call the API "
            "(set DOSSIER_CORS_ORIGINS, e.g. https://wiki.example.org)"
        )
    return "browsers on other sites (the wiki widget): pages of " + ", ".join(settings.cors_origin_list)


def prepare(settings: Settings, demo: Path | None = DEMO_CORPUS, say: Any = print) -> Assistant:
    """The process's one `Assistant`; an empty store first gets the demo corpus (when `demo` exists)."""
    assistant = Assistant.from_settings(settings)
    if demo is not None and demo.is_dir() and assistant.store.article_count() == 0:
        say(f"empty store at {assistant.store.location}: ingesting the demo corpus {demo} ...")
        report = assistant.stored.ingest([demo])
        say(f"added {len(report.added)} articles ({report.chunks} chunks) in {report.seconds:.1f} s")
    return assistant


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860, demo: Path | None = DEMO_CORPUS) -> None:
    """Run Dossier (chat at `/`, API at `/api`, docs at `/docs`) until interrupted."""
    import uvicorn

    app = create_app(settings, prepare(settings, demo))
    print(
        f"Dossier on http://{host}:{port}  (API docs: http://{host}:{port}/docs, embed: http://{host}:{port}/?embed=1)"
    )
    for line in [*Access.from_settings(settings).summary(), cors_summary(settings)]:
        print(f"  {line}")
    # uvicorn raises the signal that stopped it again once it has shut down; exiting through Python lets the
    # `finally` below run (SIGINT already does, as KeyboardInterrupt).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    # `dossier ask` on this store asks this server instead of starting cold (assistant/serving.py).
    with announced(None if settings.chroma_url else settings.store, host, port):
        uvicorn.run(app, host=host, port=port, log_level="warning")


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class BackgroundServer:
    """An app served by uvicorn on 127.0.0.1 in a background thread (tests, benchmarks, screenshots).

    >>> with BackgroundServer(create_app(settings)) as server:       # doctest: +SKIP
    ...     httpx.get(server.url + "/api/health").json()["status"]
    'ok'
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        )
        self.host = host
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=f"dossier-server-{port}")
        self.url = ""

    def start(self, timeout: float = 60.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Dossier server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        if self.thread.is_alive():  # clients holding connections open (event streams) do not delay the end
            self.server.force_exit = True
            self.thread.join(timeout=5)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
