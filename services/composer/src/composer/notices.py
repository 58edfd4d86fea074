"""What the thread is told instead of a summary when a link cannot be read (UNREADABLE_LINK_REPLY).

The wording is technoshare_common.schemas.UNREADABLE_REASONS, the one table retrieval's messages come from too;
the notice never echoes retrieval's message or any address.
"""

from pydantic import ValidationError

from composer.settings import ComposerSettings
from technoshare_common.schemas import UNREADABLE_REASONS, Notice, UnreadableKind, UnreadableLink


def unreadable_body(detail: object) -> UnreadableLink | None:
    """retrieval's 422 body, or None when it is not one (a proxy's page, a malformed answer)."""
    try:
        return UnreadableLink.model_validate(detail)
    except ValidationError:
        return None


def transient(detail: object) -> bool:
    """Whether the site may answer later. Read from the flag alone, so a retrieval newer than this composer (a
    kind this one does not know, during a rolling update) still gets its retries."""
    return isinstance(detail, dict) and detail.get("transient") is True


def unreadable_notice(kind: UnreadableKind | None, settings: ComposerSettings) -> Notice:
    reason = UNREADABLE_REASONS[kind] if kind is not None else "it could not be read"
    return Notice(
        text=f"I could not summarise this link: {reason}.",
        delivery=settings.unreadable_link_reply,
        reaction=settings.unreadable_link_reaction,
    )
