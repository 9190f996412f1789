"""The few domain errors Dossier raises; the CLI and the chat turn them into one clear line."""


class DossierError(Exception):
    """Base class: a problem the user can fix, with a message that says what to do."""


class ConfigError(DossierError):
    """A setting is invalid or a configured backend (model, server, package) is missing."""


class EmptyStoreError(DossierError):
    """The store holds no articles yet."""

    def __init__(self, store: str = "") -> None:
        where = f" in {store}" if store else ""
        super().__init__(f"no articles yet{where}: run dossier ingest PATH")


class BadQuestionError(DossierError):
    """The question is empty, too long or otherwise unusable."""


class BackendUnavailableError(DossierError):
    """An LLM server is down or a model is missing."""


class NotFoundError(DossierError):
    """An article id that the store does not hold."""


class QuestionFileError(DossierError):
    """An evaluation question file that cannot be used (missing, unknown format, no valid question)."""


class ReadOnlyError(DossierError):
    """A write (upload, removal) on a server started with read_only."""


class UploadError(DossierError):
    """An uploaded file that is refused before anything is stored."""


class UnsupportedFileError(UploadError):
    """An uploaded file whose type is not on the allow-list."""


class UploadTooLargeError(UploadError):
    """An uploaded file (or request) over the size limit."""
