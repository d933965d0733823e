"""The command palette's entries (Ctrl+P): every action of the chat and the app, with the key it has
now (``{key:ID}`` marks filled from the active keymap)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from tokrace.tui.words import keyed

if TYPE_CHECKING:
    from tokrace.tui.app import TokraceApp


def system_commands(app: TokraceApp) -> Iterable[SystemCommand]:
    """tokrace's own palette entries (Textual's follow them)."""
    chat = app.chat
    commands = (
        ("New chat", "Clear the conversation ({key:chat.new})", chat.action_new_chat),
        ("Stop reply", "Stop the streaming reply ({key:chat.stop})", chat.action_stop_reply),
        ("Models", "Browse, pull and switch models ({key:app.models})", app.action_open_models),
        ("Settings", "Context, threads, GPU offload, price per hour ({key:app.settings})",
         app.action_open_settings),
        ("Draft model", "Speculative decoding: pick a draft or prompt lookup ({key:chat.draft})",
         app.action_choose_draft),
        ("A/B rerun without the draft", "Measure the draft's speedup ({key:chat.ab})",
         chat.action_ab_rerun),
        ("Keys", "Every key of the chat ({key:app.help})", app.action_help),
        ("Conversations", "Saved chats: resume, export as Markdown ({key:app.conversations})",
         app.action_open_conversations),
        ("Copy last reply", "To the clipboard, over ssh too ({key:chat.copy})", chat.action_copy_reply),
        ("Regenerate", "A new reply to the last message ({key:chat.regenerate})", chat.action_regenerate),
        ("Edit last message", "Back into the box to edit and resend ({key:chat.edit})",
         chat.action_edit_last),
        ("Speed log", "Past sessions and replies, export ({key:app.sessions})",
         app.action_open_sessions),
        ("Race", "Two models, one prompt, side by side ({key:app.race})", app.action_toggle_race),
    )
    for title, help_text, callback in commands:
        yield SystemCommand(title, keyed(help_text), callback)
