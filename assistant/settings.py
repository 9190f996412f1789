"""One settings object for all of Dossier: defaults, then `dossier.toml`, then `DOSSIER_*` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ingest.pdf_worker import PDF_MAX_MEMORY_MB, PDF_TIMEOUT_S, PdfLimits

# Candidate sentences the extractive reader encodes per question, of the ~35 in five passages: 2 to 6 and all
# were measured (bench/fit_reader.py --shortlist, docs/quality.md); 4 and more answer exactly as all do.
READER_SHORTLIST = 4

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"
# Files Dossier derives once and keeps for later processes (the encoder's ONNX graph, the English word list).
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dossier"


class Settings(BaseSettings):
    """Dossier's configuration. Build it once at the edge (CLI, app) and pass it down.

    >>> Settings(store="/tmp/store", chunk_size=900).chunk_size
    900

    Environment variables use the `DOSSIER_` prefix (`DOSSIER_STORE=/srv/dossier`); a `dossier.toml`
    in the working directory (or the file named by `DOSSIER_CONFIG`) sets the same fields.
    """

    model_config = SettingsConfigDict(env_prefix="DOSSIER_", extra="ignore", toml_file="dossier.toml")

    # Store
    store: Path = Field(Path("data/store"), description="Folder of the embedded (persistent) Chroma store.")
    collection: str = Field("dossier", description="Chroma collection name for the article chunks.")
    chroma_url: str = Field("", description="URL of a Chroma server (http://host:port); empty uses the embedded store.")

    # Embedding and chunking
    embedding_model: str = Field(
        BUNDLED_MODEL,
        description="Sentence-transformers model: 'bundled:all-MiniLM-L6-v2' (shipped, offline) or a local model folder.",
    )
    embedding_dtype: str = Field(
        "float32",
        description="Weights precision on CPU: 'float32' or 'bfloat16' (faster only on CPUs with native bf16, e.g. AVX512-BF16/AMX).",
    )
    embedding_batch_size: int = Field(64, ge=1, description="Chunks encoded per batch.")
    chunk_size: int = Field(900, ge=200, le=8000, description="Target chunk length in characters (whole sentences).")
    chunk_overlap: int = Field(
        0, ge=0, description="Characters of whole trailing sentences repeated in the next chunk."
    )
    max_file_mb: float = Field(20.0, gt=0, description="Files larger than this are skipped.")
    max_chunks_per_article: int = Field(
        500, ge=1, description="Articles that make more chunks than this are skipped (a file that is not one article)."
    )
    pdf_timeout_s: float = Field(
        PDF_TIMEOUT_S,
        gt=0,
        description="Seconds one PDF may take to read (in a child process); a PDF that takes longer is skipped.",
    )
    pdf_max_memory_mb: int = Field(
        PDF_MAX_MEMORY_MB,
        ge=256,
        description="Memory (address space, MiB) the child process reading one PDF may use; past it the PDF is skipped.",
    )

    # Retrieval and answering
    k: int = Field(5, ge=1, le=50, description="Passages given to the answerer.")
    max_per_article: int = Field(2, ge=1, description="At most this many passages from one article in the context.")
    reranker: str = Field("", description="Local cross-encoder model folder for re-ranking; empty disables it.")
    llm: str = Field("extractive", description="Answerer: 'extractive', 'ollama:MODEL' or 'openai:MODEL'.")
    openai_base_url: str = Field(
        "", description="Base URL of an OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1)."
    )
    openai_api_key: str = Field("", description="API key for the OpenAI-compatible server.")
    ollama_url: str = Field("http://127.0.0.1:11434", description="Ollama server URL.")
    llm_timeout: float = Field(60.0, gt=0, description="Seconds to wait for an LLM server.")
    max_question_chars: int = Field(1000, ge=10, description="Longer questions are refused.")
    reader_weights: str = Field(
        "",
        description="Weights file of the extractive reader (as written by bench/fit_reader.py); empty uses the shipped one.",
    )
    reader_shortlist: int = Field(
        READER_SHORTLIST,
        ge=0,
        description="Candidate sentences the extractive reader encodes per question, the likeliest by their words, "
        "names and retrieval rank; 0 encodes every sentence of the passages (slower).",
    )
    keep_unsupported: bool = Field(
        False, description="Keep answer sentences that verification flags (marked), instead of removing them."
    )

    # Serving
    api_token: str = Field(
        "",
        description="When set, the HTTP API needs 'Authorization: Bearer TOKEN'; without `auth` the chat then answers "
        "questions only (uploads and removals go through the API).",
    )
    auth: str = Field("", description="'user:pass' to require a login for the chat page and all its routes.")
    login_max_failures: int = Field(
        5,
        ge=1,
        description="Failed chat logins one client address may make within login_window_s before it must wait "
        "(answered 429 with Retry-After).",
    )
    login_window_s: float = Field(300.0, gt=0, description="Seconds over which failed chat logins are counted.")
    login_lockout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds a client waits after its first run of failed logins; each further run doubles it, up "
        "to an hour. A successful login clears the client's count.",
    )
    read_only: bool = Field(False, description="Disable uploads and removals (e.g. for a wiki embed).")
    ingest_worker: bool = Field(
        True,
        description="Ingest uploads in a child process at a lower CPU priority, so questions are answered at full "
        "speed meanwhile (false: in the serving process).",
    )
    cors_origins: str = Field("", description="Comma-separated origins allowed to call the API from a browser.")
    max_upload_mb: float = Field(20.0, gt=0, description="Largest file accepted by upload.")
    max_upload_files: int = Field(20, ge=1, description="Most files accepted in one upload request.")
    max_request_kb: int = Field(
        256,
        ge=1,
        description="Largest body of any other API request (/api/ask and the rest), in KiB; uploads have max_upload_mb.",
    )
    upload_dir: Path = Field(
        Path("data/uploads"),
        description="Folder where uploaded files are kept (under server-chosen names) for their articles to link to.",
    )
    example_questions: list[str] = Field(
        default=[
            "What figures did Hamas report?",
            "What did the European Central Bank cut its deposit facility rate to in June 2024?",
            "Which rocket launched the Kestrel-1 weather satellite?",
            "What was Daniel Kiprono's winning time at the Harborton City Marathon?",
        ],
        description="Example questions offered in the chat (a JSON list in DOSSIER_EXAMPLE_QUESTIONS); match them to your articles.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        import os

        toml_file = os.environ.get("DOSSIER_CONFIG", "dossier.toml")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    @field_validator("embedding_dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in {"bfloat16", "float32"}:
            raise ValueError("embedding_dtype must be 'bfloat16' or 'float32'")
        return value

    @field_validator("llm")
    @classmethod
    def _known_llm(cls, value: str) -> str:
        kind, _, name = value.partition(":")
        if value != "extractive" and (kind not in {"ollama", "openai"} or not name):
            raise ValueError(f"llm {value!r}: use 'extractive', 'ollama:MODEL' or 'openai:MODEL'")
        return value

    @field_validator("auth")
    @classmethod
    def _user_colon_password(cls, value: str) -> str:
        user, colon, password = value.partition(":")
        if value and not (colon and user and password):
            raise ValueError("auth must be 'user:password' (both non-empty)")
        return value

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given fields replaced (None values are ignored), validated again."""
        data = self.model_dump()
        data.update({key: value for key, value in changes.items() if value is not None})
        return Settings.model_validate(data)

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def pdf_limits(self) -> PdfLimits:
        """The time and memory one PDF may take to read (`pdf_timeout_s`, `pdf_max_memory_mb`)."""
        return PdfLimits(timeout_s=self.pdf_timeout_s, max_memory_mb=self.pdf_max_memory_mb)

    @property
    def auth_pair(self) -> tuple[str, str] | None:
        """(user, password) from `auth`, or None when the chat page needs no login."""
        if not self.auth:
            return None
        user, _, password = self.auth.partition(":")
        return user, password
