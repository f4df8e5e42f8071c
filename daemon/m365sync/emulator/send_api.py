"""Graph v1.0 endpoints that compose and send mail, answered from a `Mailbox`.

`graph_api` hands every ``POST`` below here (`handles`, `route`); shapes follow Microsoft's
documentation (docs = microsoftgraph/microsoft-graph-docs-contrib) and
tests/emulator/test_send_docs.py compares the answers with the documented examples.

* ``POST /me/messages`` (and ``/me/mailFolders/{id}/messages``) -- create a draft: 201 with
  the message, id, internetMessageId and conversationId assigned at once, isDraft and isRead
  true, an HTML body wrapped the way the documented answer shows, no from/sender until it is
  sent; internetMessageHeaders are not in the answer ("not returned by default in a POST
  response"; ``$select`` them on a GET). Needs **Mail.ReadWrite** (docs
  `api/user-post-messages.md` @ 0273c463; learn.microsoft.com lists no lesser permission).
* ``POST /me/messages/{id}/attachments`` -- 201 with the attachment; Mail.ReadWrite. "This
  operation limits the size of the attachment you can add to under 3 MB" (docs
  `api/message-post-attachments.md` @ 07597171); larger files need an upload session
  (docs `concepts/outlook-large-attachments.md`), which the emulator does not implement
  (``.../attachments/createUploadSession`` answers 501). The refusal is not documented; the
  emulator answers what Graph was seen answering for requests past its 4 MB request limit:
  400 ``BadRequest`` "The maximum request length supported is 4MB."
  (microsoftgraph/microsoft-graph-docs#11806; #85 saw "Maximum request length exceeded.",
  alcionai/corso#1115 a bare 413 -- do not branch on the status, check sizes before sending).
* ``POST /me/messages/{id}/send`` -- 202, no body; Mail.Send (docs `api/message-send.md`
  @ 01c641ac). The draft leaves Drafts and its copy lands in Sent Items with the same id (docs
  `concepts/outlook-immutable-id.md` @ 122c4921; ``Mailbox.send_keeps_id`` off gives it a new
  id instead, as `resources/mail-api-overview.md` and microsoft-graph-docs#1533 describe),
  isDraft false, sentDateTime set, from/sender the owner, headers and attachments kept.
  Sending an id that is no draft (a received message, or a draft already sent) answers 404
  ``ErrorItemNotFound`` (rlrghb/olkcli#118: sending a received message's id returned "The
  specified object was not found in the store"; whether /send is idempotent is an open
  question, microsoft-graph-docs-contrib#921).
* ``POST /me/sendMail`` -- 202, no body, no id; Mail.Send; ``saveToSentItems`` defaults to true
  (the documented example sends it as the string "false", which is accepted) (docs
  `api/user-sendmail.md` @ 0713c450).
* ``POST /me/messages/{id}/createReply`` -- 201 with a reply draft (Mail.ReadWrite): subject
  "RE: ...", same conversationId, to the original's replyTo if it has one, else its from;
  ``comment`` or ``message.body``, both is a 400 (docs `api/message-createreply.md` @ 0273c463).
* ``POST /me/messages/{id}/reply`` -- the same reply sent at once: 202, Mail.Send, saved to Sent
  Items (docs `api/message-reply.md` @ 0f0835cb).
* ``POST /me/calendar/getSchedule`` -- schedule.py.

Checks shared by the sends (a draft may hold anything; Graph checks on send): no recipient at
all, or an address that is no address, is 400 ``ErrorInvalidRecipients`` with the words Graph
uses ("At least one recipient isn't valid., A message can't be sent because it contains no
recipients." -- microsoftgraph/msgraph-sdk-dotnet#1891; "..., Recipient "bad" isn't resolved.
All recipients must be resolved before a message can be submitted." --
microsoftgraph/ruby-connect-rest-sample#15). ``internetMessageHeaders``: "Add custom headers
only when creating a message, and name them starting with "x-"" (docs `resources/message.md`
@ 13a4446c); another name is 400 ``InvalidInternetMessageHeader`` "The internet message header
name 'In-Reply-To' should start with 'x-' or 'X-'." (the code and words reported by several
clients; not in the docs), and more than five custom headers is 400
``InvalidInternetMessageHeaderCollection`` (reported, not documented).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import html
import json
import mimetypes
import re
import uuid
from typing import Any

from werkzeug.wrappers import Response

from m365sync.emulator import schedule
from m365sync.emulator.graph_api import (
    Call,
    GraphError,
    _body_type,
    _folder_id,
    _id_type,
    _require,
    shape_attachment,
    shape_message,
)
from m365sync.emulator.mailbox import is_well_formed_id
from m365sync.emulator.wire import json_response

MAIL_WRITE = frozenset(["mail.readwrite"])
MAIL_SEND = frozenset(["mail.send"])
MAX_ATTACHMENT_BYTES = 3 * 1024 * 1024  # "under 3 MB"
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # Graph's request limit behind it
MAX_CUSTOM_HEADERS = 5
FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
ATTACHMENT_TYPES = frozenset(
    [FILE_ATTACHMENT, "#microsoft.graph.itemAttachment", "#microsoft.graph.referenceAttachment"]
)
# Writable message properties a create, sendMail or reply body may carry (docs
# `resources/message.md`); read-only ones are ignored, unknown ones refused.
WRITABLE = frozenset(
    [
        "subject",
        "body",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "from",
        "sender",
        "importance",
        "internetMessageHeaders",
        "internetMessageId",
        "attachments",
        "categories",
        "flag",
        "isDeliveryReceiptRequested",
        "isReadReceiptRequested",
        "inferenceClassification",
    ]
)
READ_ONLY = frozenset(
    [
        "id",
        "@odata.type",
        "@odata.etag",
        "createdDateTime",
        "lastModifiedDateTime",
        "changeKey",
        "receivedDateTime",
        "sentDateTime",
        "hasAttachments",
        "bodyPreview",
        "parentFolderId",
        "conversationId",
        "conversationIndex",
        "isRead",
        "isDraft",
        "webLink",
        "uniqueBody",
    ]
)
RECIPIENT_LISTS = ("toRecipients", "ccRecipients", "bccRecipients", "replyTo")
ACTIONS = frozenset(["send", "createreply", "reply", "attachments"])
# The HTML frame Graph puts around a draft's body (docs `api/user-post-messages.md`, example 1).
HTML_FRAME = (
    '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
    '\r\n<meta content="text/html; charset=us-ascii">\r\n</head>\r\n<body>\r\n{}\r\n</body>'
    "\r\n</html>\r\n"
)
_ADDRESS = re.compile(
    r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
NOT_FOUND = "The specified object was not found in the store."


# --------------------------------------------------------------------------- routing


def _action(token: str) -> str:
    name = token.lower()
    return name[len("microsoft.graph.") :] if name.startswith("microsoft.graph.") else name


def _shape(rest: list[str]) -> tuple[str, str | None, str | None] | None:
    """(what, message id, folder ref) of a POST this module answers, or None."""
    low = [_action(t) for t in rest]
    folder = None
    if len(low) >= 3 and low[0] == "mailfolders" and low[2] == "messages":
        folder, rest, low = rest[1], ["messages", *rest[3:]], ["messages", *low[3:]]
    if low == ["messages"]:
        return "create", None, folder
    if len(low) == 3 and low[0] == "messages" and low[2] in ACTIONS:
        return low[2], rest[1], folder
    if len(low) == 4 and low[0] == "messages" and low[2:] == ["attachments", "createuploadsession"]:
        return "uploadsession", rest[1], folder
    if folder is None and low == ["sendmail"]:
        return "sendmail", None, None
    if folder is None and low == ["calendar", "getschedule"]:
        return "getschedule", None, None
    return None


def handles(method: str, rest: list[str]) -> bool:
    """Whether a request (path after ``/me``) is one of the POSTs answered here."""
    return method.upper() == "POST" and _shape(rest) is not None


def route(call: Call, rest: list[str]) -> Response:
    """Answer one of the POSTs `handles` accepts."""
    shape = _shape(rest)
    assert shape is not None
    what, mid, folder = shape
    call.mailbox.settle_sends()
    if what == "getschedule":
        return schedule.get_schedule(call)
    _limit_request(call)
    if what == "create":
        return _create_draft(call, folder)
    if what == "sendmail":
        return _send_mail(call)
    assert mid is not None
    if what == "attachments":
        return _add_attachment(call, mid, folder)
    if what == "uploadsession":
        _require(call, MAIL_WRITE)
        raise GraphError(
            501,
            "NotImplemented",
            "The emulator does not implement upload sessions; attach files under 3 MB.",
        )
    if what == "send":
        return _send(call, mid, folder)
    return _reply(call, mid, folder, send=what == "reply")


# --------------------------------------------------------------------------- request bodies


def _too_large() -> GraphError:
    return GraphError(400, "BadRequest", "The maximum request length supported is 4MB.")


def _limit_request(call: Call) -> None:
    if (call.request.content_length or 0) > MAX_REQUEST_BYTES:
        raise _too_large()
    if len(call.request.get_data()) > MAX_REQUEST_BYTES:
        raise _too_large()


def _payload(call: Call, *, required: bool) -> dict[str, Any]:
    data = call.request.get_data()
    if call.request.mimetype == "text/plain":
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise GraphError(
                400,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            ) from None
        raise GraphError(501, "NotImplemented", "The emulator does not take MIME content.")
    if not data.strip():
        if required:
            raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
        return {}
    try:
        payload = json.loads(data)
    except ValueError:
        raise GraphError(400, "BadRequest", "Invalid JSON in the request body.") from None
    if not isinstance(payload, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return payload


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise GraphError(400, "BadRequest", f"Invalid value for parameter '{name}'.")


# --------------------------------------------------------------------------- composing


def _recipients(value: Any, field: str, mailbox: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise GraphError(400, "BadRequest", f"Invalid value for property '{field}'.")
    owner = str(mailbox.user.get("mail") or "").lower()
    out: list[dict[str, Any]] = []
    for item in value:
        email = item.get("emailAddress") if isinstance(item, dict) else None
        if not isinstance(email, dict) or not isinstance(email.get("address", ""), str):
            raise GraphError(400, "BadRequest", f"Invalid value for property '{field}'.")
        address = str(email.get("address") or "")
        name = email.get("name")
        if not name:
            name = mailbox.user.get("displayName") if address.lower() == owner else address
        out.append({"emailAddress": {"name": name, "address": address}})
    return out


def _one_recipient(value: Any, field: str, mailbox: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return _recipients([value], field, mailbox)[0]


def _item_body(value: Any) -> dict[str, str]:
    if value is None:
        return {"contentType": "html", "content": ""}
    if not isinstance(value, dict):
        raise GraphError(400, "BadRequest", "Invalid value for property 'body'.")
    kind = str(value.get("contentType") or "text").lower()
    if kind not in ("text", "html"):
        raise GraphError(400, "BadRequest", f"Invalid body contentType '{value['contentType']}'.")
    content = str(value.get("content") or "")
    if kind == "html" and "<html" not in content.lower():
        content = HTML_FRAME.format(content)
    return {"contentType": kind, "content": content}


def _headers(value: Any) -> list[dict[str, str]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise GraphError(400, "BadRequest", "Invalid value for property 'internetMessageHeaders'.")
    if len(value) > MAX_CUSTOM_HEADERS:
        raise GraphError(
            400,
            "InvalidInternetMessageHeaderCollection",
            f"Maximum number of headers in one message should be less than or equal to "
            f"{MAX_CUSTOM_HEADERS}.",
        )
    out = []
    for header in value:
        name = header.get("name") if isinstance(header, dict) else None
        if not isinstance(name, str) or not name:
            raise GraphError(400, "BadRequest", "An internet message header needs a name.")
        if not name.lower().startswith("x-"):
            raise GraphError(
                400,
                "InvalidInternetMessageHeader",
                f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
            )
        out.append({"name": name, "value": str(header.get("value") or "")})
    return out


_MAGIC = ((b"GIF8", "image/gif"), (b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"))
_MAGIC += ((b"%PDF", "application/pdf"), (b"PK\x03\x04", "application/zip"))


def _sniff(name: str, content: bytes) -> str:
    """The contentType Graph reports when none is given (the documented answer says
    image/gif for a GIF named "smile"): by the file's name, else by its first bytes."""
    guessed = mimetypes.guess_type(name)[0]
    if guessed:
        return guessed
    return next(
        (kind for magic, kind in _MAGIC if content.startswith(magic)), "application/octet-stream"
    )


def attachment_resource(given: Any) -> dict[str, Any]:
    """An attachment as a request gives it, checked and sized (3 MB limit, base64 content)."""
    if not isinstance(given, dict):
        raise GraphError(400, "BadRequest", "Invalid value for an attachment.")
    kind = str(given.get("@odata.type") or "")
    if kind and not kind.startswith("#"):
        kind = "#" + kind
    if kind not in ATTACHMENT_TYPES:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "An attachment needs an @odata.type of #microsoft.graph.fileAttachment, "
            "itemAttachment or referenceAttachment.",
        )
    out = {k: copy.deepcopy(v) for k, v in given.items() if k not in ("id", "@odata.type")}
    out["@odata.type"] = kind
    name = str(given.get("name") or "")
    if kind == FILE_ATTACHMENT:
        raw = given.get("contentBytes")
        try:
            text = str(raw) + "=" * (-len(str(raw)) % 4)  # the docs' own sample lacks padding
            content = base64.b64decode(text, validate=True) if raw is not None else None
        except (binascii.Error, ValueError):
            content = None
        if content is None:
            raise GraphError(
                400, "ErrorInvalidParameter", "A fileAttachment needs base64 contentBytes."
            )
        if len(content) >= MAX_ATTACHMENT_BYTES:
            raise _too_large()
        out["size"] = len(content)
        out["contentType"] = given.get("contentType") or _sniff(name, content)
        out.setdefault("contentId", None)
        out.setdefault("contentLocation", None)
    else:
        out["size"] = len(json.dumps(given).encode("utf-8"))
        out.setdefault("contentType", None)
    out["name"] = name
    out["isInline"] = bool(given.get("isInline", False))
    return out


def compose(given: Any, mailbox: Any) -> dict[str, Any]:
    """A message resource from a request's message object: writable properties checked and
    normalised (recipients, body, headers, attachments), read-only ones dropped."""
    if not isinstance(given, dict):
        raise GraphError(400, "BadRequest", "The message must be a JSON object.")
    for name in given:
        if name not in WRITABLE and name not in READ_ONLY and not name.startswith("@"):
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{name}' does not exist on type 'microsoft.graph.message'. Make "
                "sure to only use property names that are defined by the type or mark the type "
                "as open type.",
            )
    message: dict[str, Any] = {"subject": str(given.get("subject") or "")}
    message["body"] = _item_body(given.get("body"))
    for field in RECIPIENT_LISTS:
        message[field] = _recipients(given.get(field), field, mailbox)
    for field in ("from", "sender"):
        if given.get(field) is not None:
            message[field] = _one_recipient(given[field], field, mailbox)
    if given.get("importance") is not None:
        importance = str(given["importance"]).lower()
        if importance not in ("low", "normal", "high"):
            raise GraphError(400, "BadRequest", f"Invalid importance '{given['importance']}'.")
        message["importance"] = importance
    headers = _headers(given.get("internetMessageHeaders"))
    if headers is not None:
        message["internetMessageHeaders"] = headers
    for field in (
        "internetMessageId",
        "categories",
        "flag",
        "isDeliveryReceiptRequested",
        "isReadReceiptRequested",
        "inferenceClassification",
    ):
        if given.get(field) is not None:
            message[field] = copy.deepcopy(given[field])
    attachments = given.get("attachments")
    if attachments is not None:
        if not isinstance(attachments, list):
            raise GraphError(400, "BadRequest", "Invalid value for property 'attachments'.")
        message["attachments"] = [attachment_resource(a) for a in attachments]
    return message


def check_recipients(message: dict[str, Any]) -> None:
    """What Graph checks when a message is submitted: someone to send to, real addresses."""
    everyone = [
        r for field in ("toRecipients", "ccRecipients", "bccRecipients") for r in message[field]
    ]
    if not everyone:
        raise GraphError(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid., A message can't be sent because it contains "
            "no recipients.",
        )
    for recipient in everyone:
        address = str(recipient["emailAddress"].get("address") or "")
        if not _ADDRESS.match(address):
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                f"At least one recipient isn't valid., Recipient \"{address}\" isn't resolved. "
                "All recipients must be resolved before a message can be submitted.",
            )


def _stored_recipients(message: dict[str, Any]) -> dict[str, Any]:
    return {
        f: list(message.get(f) or []) for f in ("toRecipients", "ccRecipients", "bccRecipients")
    }


# --------------------------------------------------------------------------- lookups


def _find(call: Call, mid: str, folder: str | None) -> dict[str, Any]:
    """The stored message (caller holds the lock); 400/404 as Graph answers."""
    mailbox = call.mailbox
    fid = _folder_id(call, [folder]) if folder is not None else None
    try:
        message = mailbox.view(mid)
        if fid is not None and mailbox.folder_of(mid) != fid:
            raise KeyError(mid)
    except KeyError:
        if not is_well_formed_id(mid):
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.") from None
        raise GraphError(404, "ErrorItemNotFound", NOT_FOUND) from None
    if mailbox.is_raw(mid):
        raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)
    return message


def _message_answer(call: Call, message: dict[str, Any], status: int) -> Response:
    shaped = shape_message(message, None, _body_type(call))
    shaped.pop("@odata.type", None)
    body = {"@odata.context": f"{call.base}/$metadata#users('{call.user_id}')/messages/$entity"}
    body.update(shaped)
    return json_response(body, status)


def _accepted() -> Response:
    """202 Accepted with no body, as the send actions answer."""
    return Response(status=202, headers={"request-id": str(uuid.uuid4())})


# --------------------------------------------------------------------------- handlers


def _create_draft(call: Call, folder: str | None) -> Response:
    _require(call, MAIL_WRITE)
    _id_type(call)
    message = compose(_payload(call, required=True), call.mailbox)
    with call.mailbox.lock:
        fid = _folder_id(call, [folder]) if folder is not None else "drafts"
        created = call.mailbox.create_draft(message, fid)
    return _message_answer(call, created, 201)


def _add_attachment(call: Call, mid: str, folder: str | None) -> Response:
    _require(call, MAIL_WRITE)
    _id_type(call)
    attachment = attachment_resource(_payload(call, required=True))
    with call.mailbox.lock:
        _find(call, mid, folder)
        stored = call.mailbox.add_attachment(mid, attachment)
    context = f"{call.base}/$metadata#users('{call.user_id}')/messages('{mid}')/attachments/$entity"
    body: dict[str, Any] = {"@odata.context": context}
    body.update(shape_attachment(stored, None))
    return json_response(body, 201)


def _send(call: Call, mid: str, folder: str | None) -> Response:
    _require(call, MAIL_SEND)
    _id_type(call)
    with call.mailbox.lock:
        message = _find(call, mid, folder)
        if not message.get("isDraft"):
            raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)
        check_recipients(_stored_recipients(message))
        call.mailbox.send_draft(mid, kind="send")
    return _accepted()


def _send_mail(call: Call) -> Response:
    _require(call, MAIL_SEND)
    payload = _payload(call, required=True)
    if not isinstance(payload.get("message"), dict):
        raise GraphError(
            400, "ErrorInvalidParameter", "The value of the parameter 'Message' is empty."
        )
    save = _bool(payload.get("saveToSentItems", True), "saveToSentItems")
    message = compose(payload["message"], call.mailbox)
    check_recipients(message)
    call.mailbox.send_new(message, kind="sendMail", save=save)
    return _accepted()


def _reply(call: Call, mid: str, folder: str | None, *, send: bool) -> Response:
    _require(call, MAIL_SEND if send else MAIL_WRITE)
    _id_type(call)
    payload = _payload(call, required=False)
    comment = payload.get("comment")
    given = payload.get("message") if payload.get("message") is not None else {}
    if not isinstance(given, dict):
        raise GraphError(400, "BadRequest", "The message must be a JSON object.")
    if comment is not None and given.get("body") is not None:
        raise GraphError(
            400,
            "ErrorInvalidRequest",
            "Specify either a comment or the body property of the message parameter, not both.",
        )
    with call.mailbox.lock:
        original = copy.deepcopy(_find(call, mid, folder))
        message = reply_to(original, comment, given, call.mailbox)
        if send:
            check_recipients(message)
            call.mailbox.send_new(message, kind="reply", in_reply_to=mid)
            return _accepted()
        created = call.mailbox.create_draft(message)
    return _message_answer(call, created, 201)


# --------------------------------------------------------------------------- replies


def _reply_subject(subject: str) -> str:
    return subject if subject.lower().startswith("re:") else f"RE: {subject}"


def _child_index(index: Any, seed: str) -> str:
    """A reply's conversationIndex: the parent's 22-byte header plus a 5-byte child block."""
    try:
        parent = base64.b64decode(str(index or ""), validate=True)
    except (binascii.Error, ValueError):
        parent = b""
    return base64.b64encode(parent + hashlib.sha256(seed.encode()).digest()[:5]).decode("ascii")


def _quote(original: dict[str, Any]) -> str:
    """Outlook's quoted header block and the original body, as HTML."""

    def who(value: Any) -> str:
        email = (value or {}).get("emailAddress") or {}
        return html.escape(str(email.get("name") or email.get("address") or ""))

    to = "; ".join(who(r) for r in original.get("toRecipients") or [])
    body = original.get("body") or {}
    content = str(body.get("content") or "")
    if str(body.get("contentType", "html")).lower() != "html":
        content = html.escape(content).replace("\n", "<br>")
    return (
        '<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr">'
        f"<b>From:</b> {who(original.get('from') or original.get('sender'))}<br>"
        f"<b>Sent:</b> {html.escape(str(original.get('sentDateTime') or ''))}<br>"
        f"<b>To:</b> {to}<br>"
        f"<b>Subject:</b> {html.escape(str(original.get('subject') or ''))}</div>"
        f"<div>{content}</div>"
    )


def reply_to(
    original: dict[str, Any], comment: Any, given: dict[str, Any], mailbox: Any
) -> dict[str, Any]:
    """The reply to `original`: "RE:" subject, same conversation, to its replyTo (or from),
    the comment or the given body above the quoted original; `given`'s other writable
    properties override."""
    overrides = compose({k: v for k, v in given.items() if k != "body"}, mailbox)
    if given.get("body") is not None:
        own = _item_body(given["body"])
        text = own["content"]
        if own["contentType"] == "text":
            text = html.escape(text).replace("\n", "<br>")
    else:
        text = html.escape(str(comment or "")).replace("\n", "<br>")
    reply_to_list = original.get("replyTo") or []
    sender = original.get("from") or original.get("sender")
    message: dict[str, Any] = {
        "subject": _reply_subject(str(original.get("subject") or "")),
        "body": {
            "contentType": "html",
            "content": HTML_FRAME.format(f"<div>{text}</div>{_quote(original)}"),
        },
        "toRecipients": _recipients(
            copy.deepcopy(reply_to_list or ([sender] if sender else [])), "toRecipients", mailbox
        ),
        "ccRecipients": [],
        "bccRecipients": [],
        "replyTo": [],
        "conversationId": original.get("conversationId"),
        "conversationIndex": _child_index(original.get("conversationIndex"), str(uuid.uuid4())),
    }
    for name, value in overrides.items():
        if name == "subject" and "subject" not in given:
            continue
        if name in RECIPIENT_LISTS and name not in given:
            continue
        if name == "body":
            continue
        message[name] = value
    return message
