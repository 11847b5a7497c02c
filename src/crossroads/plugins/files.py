"""The `file-parser` plugin: PDFs turned into text for models that do not read files.

A `file` content part (`{type: "file", file: {filename, file_data: "data:application/pdf;
base64,…"}}`) sent to a model whose catalog entry does not list `file` among its
`input_modalities` becomes a text part holding the PDF's text, extracted with `pypdf`
(pure Python, no native library to install, maintained, and it tells an encrypted or
broken file apart from a valid one). A model that reads files gets the part as it came
(the `native` engine). Each parsed file comes back in the answer as OpenRouter's `file`
annotation (`{type: "file", file: {hash, name, content: [{type: "text", text}]}}`); a client
that sends those annotations back on an assistant message of a later turn has the same file
(by the SHA-256 of its bytes) taken from them, without parsing it again.

Limits, each a clear 400: `MAX_PDF_BYTES` per file (below the request body's own limit,
`max_body_bytes`, past which the request is a 413 before it is read), `MAX_PAGES` per file,
`MAX_PAGES_IN_ALL` and `MAX_FILES` per request; a file that is not a PDF, is encrypted,
or cannot be read is a 400 naming it. A file given by URL instead of data is a 400 too:
this server does not fetch from addresses a request names. The engines `pdf-text` and
`cloudflare-ai` (OpenRouter's text and markdown conversions) both mean this text
extraction; `mistral-ocr` is not available.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from dataclasses import dataclass
from typing import Any

from crossroads.errors import GatewayError

MAX_PDF_BYTES = 20 * 1024 * 1024
MAX_PAGES = 300
MAX_FILES = 20
MAX_PAGES_IN_ALL = 600  # over every file of one request
TEXT_ENGINES = ("pdf-text", "cloudflare-ai")
PDF_ENGINES = (*TEXT_ENGINES, "native")
_PDF_PREFIX = "data:application/pdf;base64,"


@dataclass(frozen=True, slots=True)
class ParsedFile:
    hash: str  # SHA-256 of the file's bytes, hex
    name: str
    text: str

    def annotation(self) -> dict[str, Any]:
        content = [{"type": "text", "text": self.text}]
        return {"type": "file", "file": {"hash": self.hash, "name": self.name, "content": content}}


def pdf_text(data: bytes, name: str, budget: list[int] | None = None) -> str:
    """The text of a PDF, page after page; a 400 for one that cannot be read. `budget`
    collects the pages parsed so far in the request (for `MAX_PAGES_IN_ALL`)."""
    budget = [] if budget is None else budget
    from pypdf import PdfReader  # loaded the first time a PDF is parsed

    if not data.startswith(b"%PDF-"):
        raise GatewayError(400, f"File '{name}' is not a PDF")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise GatewayError(400, f"File '{name}' is an encrypted PDF: it cannot be read")
        pages = reader.pages
        budget.append(len(pages))
        if sum(budget) > MAX_PAGES_IN_ALL:
            raise GatewayError(
                400, f"At most {MAX_PAGES_IN_ALL} PDF pages in all can be parsed in one request"
            )
        if len(pages) > MAX_PAGES:
            raise GatewayError(
                400, f"File '{name}' has {len(pages)} pages; at most {MAX_PAGES} can be parsed"
            )
        return "\n\n".join((page.extract_text() or "").strip() for page in pages).strip()
    except GatewayError:
        raise
    except Exception as error:  # noqa: BLE001 - a PDF is untrusted input: any failure is its own
        raise GatewayError(400, f"File '{name}' is not a readable PDF: {error}"[:300]) from None


def _known(messages: list[dict[str, Any]]) -> dict[str, ParsedFile]:
    """The files that earlier answers parsed, as their annotations came back."""
    known: dict[str, ParsedFile] = {}
    for message in messages:
        notes = message.get("annotations")
        for note in notes if isinstance(notes, list) else ():
            file = note.get("file") if isinstance(note, dict) else None
            if not isinstance(file, dict) or note.get("type") != "file":
                continue
            content = file.get("content")
            if not isinstance(content, list):
                continue
            parts = [c.get("text") for c in content if isinstance(c, dict)]
            texts = [t for t in parts if isinstance(t, str)]
            if isinstance(file.get("hash"), str) and len(texts) == len(parts):
                name = str(file.get("name") or "file.pdf")
                known[file["hash"]] = ParsedFile(file["hash"], name, "".join(texts))
    return known


def _decode(file: dict[str, Any], name: str) -> bytes:
    data = file.get("file_data")
    if not isinstance(data, str) or not data.startswith(_PDF_PREFIX):
        raise GatewayError(
            400,
            f"File '{name}': file-parser reads PDFs sent as {_PDF_PREFIX}… data; this server "
            "fetches no file from an address",
        )
    encoded = data[len(_PDF_PREFIX) :]
    if len(encoded) > MAX_PDF_BYTES * 4 // 3 + 4:
        raise GatewayError(400, f"File '{name}' is larger than {MAX_PDF_BYTES} bytes")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise GatewayError(400, f"File '{name}': its data is not valid base64") from None


def parse_files(body: dict[str, Any]) -> tuple[dict[str, Any], list[ParsedFile]]:
    """`body` with each PDF part replaced by its text (and the annotations sent back taken
    off the messages: they are for this gateway, not the provider); the files parsed, in
    order, each once. `body` itself is not changed."""
    messages = body.get("messages") or []
    known = _known(messages)
    parsed: dict[str, ParsedFile] = {}
    pages: list[int] = []
    out = []
    for message in messages:
        content = message.get("content")
        message = {k: v for k, v in message.items() if k != "annotations"}
        if isinstance(content, list):
            message["content"] = [_part(p, known, parsed, pages) for p in content]
        out.append(message)
    return {**body, "messages": out}, list(parsed.values())


def _part(
    part: Any, known: dict[str, ParsedFile], parsed: dict[str, ParsedFile], pages: list[int]
) -> dict[str, Any]:
    if not isinstance(part, dict) or part.get("type") != "file":
        return part  # type: ignore[no-any-return]
    file = part.get("file") or {}
    name = str(file.get("filename") or "file.pdf")
    data = _decode(file, name)
    digest = hashlib.sha256(data).hexdigest()
    found = parsed.get(digest) or known.get(digest)
    if found is None:
        if len(parsed) >= MAX_FILES:
            raise GatewayError(400, f"At most {MAX_FILES} files can be parsed in one request")
        found = ParsedFile(digest, name, pdf_text(data, name, pages))
    parsed[digest] = found
    return {"type": "text", "text": f"{found.name}:\n\n{found.text}"}


def has_files(body: dict[str, Any]) -> bool:
    """Whether any message has a file part (the common request has none: one quick pass)."""
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") == "file" for p in content
        ):
            return True
    return False
