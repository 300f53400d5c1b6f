"""``asclepius rate``: one clinician rates a blinded packet in the browser (Gradio, 127.0.0.1 only).

The app reads ``packet.json`` (written by ``scripts/expert_eval.py export``) and keeps the
rater's ``ratings.jsonl`` in the export's own format, so ``expert_eval.py import`` reads it
unchanged. Each item is written, atomically, the moment it is saved: a closed tab or a
crash loses at most the item on screen, and reopening continues at the first unrated item.
Nothing the browser receives names a model or a folder: only the packet's blinded items.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from asclepius.apps import LAUNCH_OPTIONS
from asclepius.errors import InputError
from asclepius.evaluation.expert import (
    APP_RUBRIC,
    NOTICE_FIELD,
    NOTICE_OF,
    PACKET_DATA_NAME,
    RUBRIC,
    notice_text,
    restricted_notice,
)
from asclepius.evaluation.judging import SCORE_NAMES
from asclepius.stage import UNKNOWN, classify
from asclepius.stage.files import atomic_write_text

RATINGS_NAME = "ratings.jsonl"
MAX_CANDIDATES = 8  # keys a-h pick an answer for the next score key
KEYBOARD_HELP = (
    "Keyboard: **1-4** score the next unscored answer (press **a**, **b**, ... first to pick one), "
    "**Enter** or **n** saves and goes to the next item, **p** goes back. Keys are ignored while typing a comment."
)


def find_packet(path: str, rater: int | None) -> Path:
    """The rater's folder: PATH itself if it holds packet.json, else PATH/packets/rater_N."""
    folder = Path(path)
    if (folder / PACKET_DATA_NAME).is_file():
        return folder
    if rater is None:
        raise InputError(path, f"no {PACKET_DATA_NAME} here; pass --rater N for the export's packets/rater_N")
    candidate = folder / "packets" / f"rater_{rater}"
    if not (candidate / PACKET_DATA_NAME).is_file():
        raise InputError(candidate, f"no {PACKET_DATA_NAME} (export it with scripts/expert_eval.py export)")
    return candidate


class RatingSheet:
    """The packet's items and the rater's ratings.jsonl, rewritten whole (atomically) on each save."""

    def __init__(self, folder: Path):
        self.folder = folder
        data = json.loads((folder / PACKET_DATA_NAME).read_text(encoding="utf-8"))
        self.rater, self.items = data["rater"], data["items"]
        # The app's rubric says scores are saved on submit; an older packet carries the files' one (fill the CSV).
        self.rubric = APP_RUBRIC if data["rubric"] == RUBRIC else data["rubric"]
        # The export's notice, rebuilt from its status and licence: the page shows only a fixed text,
        # never a packet's own words (an older export's could name a folder, hence a model).
        notice_of = data.get(NOTICE_OF) or {}
        self.exported_notice = (
            notice_text(notice_of.get("status", UNKNOWN), notice_of.get("license_name"))
            if data.get(NOTICE_FIELD)
            else None
        )
        self.notice = self.exported_notice or self._provenance_notice()
        self.path = folder / RATINGS_NAME
        self.records = self._read_records()

    def _provenance_notice(self) -> str | None:
        # Fail closed: a packet whose export folder is not known to be public is treated as restricted.
        export = self.folder.parents[1] if self.folder.parent.name == "packets" else self.folder
        return restricted_notice(classify(str(export)))

    def _blank_record(self, item: dict, label: str) -> dict:
        """An unrated row as the export writes it (its notice too), for a deleted sheet or a missing row."""
        record = {"rater": self.rater, "item": item["item"], "item_id": item["item_id"], "label": label,
                  "score": None, "comment": ""}  # fmt: skip
        return {**record, NOTICE_FIELD: self.exported_notice} if self.exported_notice else record

    def _read_records(self) -> list[dict]:
        if not self.path.is_file():  # a deleted sheet is rebuilt empty from the packet
            return [self._blank_record(e, label) for e in self.items for label in e["answers"]]
        records = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise InputError(self.path, f"invalid JSON ({error.msg})", row=number) from None
        return records

    def _rows(self, index: int) -> dict[str, dict]:
        item = self.items[index]
        return {
            r["label"]: r
            for r in self.records
            if isinstance(r, dict) and str(r.get("item_id")) == item["item_id"] and r.get("label")
        }

    def scores(self, index: int) -> dict[str, tuple[int | None, str]]:
        rows = self._rows(index)
        return {label: (rows.get(label, {}).get("score"), rows.get(label, {}).get("comment") or "")
                for label in self.items[index]["answers"]}  # fmt: skip

    def is_rated(self, index: int) -> bool:
        return all(score not in (None, "") for score, _ in self.scores(index).values())

    def first_unrated(self) -> int | None:
        return next((i for i in range(len(self.items)) if not self.is_rated(i)), None)

    def rated_count(self) -> int:
        return sum(self.is_rated(i) for i in range(len(self.items)))

    def save(self, index: int, ratings: dict[str, tuple[int, str]]) -> None:
        """Set the item's scores and comments and rewrite the file: every other field of every record
        (the export's restriction notice included) is kept as it was, so the import reads it unchanged."""
        item = self.items[index]
        rows = self._rows(index)
        for label, (score, comment) in ratings.items():
            if label not in rows:  # a row deleted by hand: back as the export wrote it
                rows[label] = self._blank_record(item, label)
                self.records.append(rows[label])
            rows[label].update(score=int(score), comment=comment.strip())
        atomic_write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records))


def build_app(sheet: RatingSheet):
    slots = max(len(item["answers"]) for item in sheet.items)
    if slots > MAX_CANDIDATES:
        raise InputError(sheet.folder, f"{slots} answers per item; the app shows at most {MAX_CANDIDATES}")
    choices = [(f"{score} {name}", score) for score, name in SCORE_NAMES.items()]
    total = len(sheet.items)

    def show(index: int, message: str = ""):
        item, scores = sheet.items[index], sheet.scores(index)
        header = f"### Item {index + 1} of {total}  \n{sheet.rated_count()} of {total} rated"
        updates = [index, header, item["note"], f"**Instruction:** {item['instruction']}", message]
        updates.append(gr.update(open=sheet.rated_count() == 0))  # the rubric stays open until a first save
        labels = list(item["answers"])
        for slot in range(slots):
            if slot < len(labels):
                score, comment = scores[labels[slot]]
                updates += [gr.update(visible=True), gr.update(value=item["answers"][labels[slot]],
                            label=f"Answer {labels[slot]}"), score, comment]  # fmt: skip
            else:
                updates += [gr.update(visible=False), gr.update(value=""), None, ""]
        return updates

    def start():
        first = sheet.first_unrated()
        if first is None:
            return show(total - 1, f"All {total} items are rated. Review any item, or close this tab.")
        return show(first)

    def move(index: int, step: int, *values):
        labels = list(sheet.items[index]["answers"])
        scores = values[0::2][: len(labels)]
        comments = values[1::2][: len(labels)]
        if any(score is None for score in scores):
            if step < 0:  # going back from a half-scored item keeps nothing of it
                return show(max(index - 1, 0))
            missing = ", ".join(label for label, score in zip(labels, scores) if score is None)
            message = f"Score every answer before saving (missing: {missing})."
            return [index, *[gr.update()] * 3, message, *[gr.update()] * (1 + 4 * slots)]
        sheet.save(index, {label: (s, c or "") for label, s, c in zip(labels, scores, comments)})
        saved = f"Item {index + 1} saved."
        target = index + step
        if target >= total:
            nxt = sheet.first_unrated()
            if nxt is None:
                return show(index, f"{saved} All {total} items are rated: thank you, you can close this tab.")
            target = nxt
        return show(max(target, 0), saved)

    with gr.Blocks(title="Asclepius: rate answers", analytics_enabled=False) as app:
        gr.Markdown("# Rate the answers")
        if sheet.notice:
            gr.Markdown(f"**{sheet.notice}**", elem_id="notice", elem_classes=["rating-notice"])
        with gr.Accordion("Rubric (read first)", open=sheet.rated_count() == 0) as rubric:
            gr.Markdown(sheet.rubric)
            gr.Markdown(KEYBOARD_HELP)
        index = gr.State(0)
        progress = gr.Markdown(elem_id="progress")
        with gr.Row():
            with gr.Column(scale=1):  # the note beside the answers: both readable without scrolling the page
                note = gr.Textbox(label="Note", lines=22, max_lines=22, interactive=False, elem_id="note")
            with gr.Column(scale=1):
                instruction = gr.Markdown(elem_id="instruction")
                fields, boxes = [], []
                for slot in range(slots):
                    with gr.Group(visible=False, elem_classes=["rating-slot"], elem_id=f"slot-{slot}") as box:
                        answer = gr.Textbox(lines=3, max_lines=10, interactive=False, elem_classes=["answer"])
                        score = gr.Radio(choices, label="Score", elem_classes=["score"])
                        comment = gr.Textbox(label="Comment (optional)", lines=1, elem_classes=["comment"])
                    boxes += [box, answer, score, comment]
                    fields += [score, comment]
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            previous = gr.Button("← Previous", elem_id="previous")
            save_next = gr.Button("Save and next →", variant="primary", elem_id="save-next")
        outputs = [index, progress, note, instruction, status, rubric, *boxes]
        private = {"api_visibility": "private"}  # no API page: the browser is the only client
        app.load(start, None, outputs, **private)
        previous.click(lambda i, *v: move(i, -1, *v), [index, *fields], outputs, **private)
        save_next.click(lambda i, *v: move(i, 1, *v), [index, *fields], outputs, **private)
    return app


CSS = """.rating-notice {border: 2px solid #b91c1c; background: #fef2f2; padding: 8px 12px; border-radius: 6px}
.rating-notice .rating-notice {border: none; padding: 0}"""
KEYBOARD_JS = """
() => {
  let picked = null;
  // Gradio puts the class on a group and on its inner box: keep the outer one, if shown.
  const visibleSlots = () => [...document.querySelectorAll('.rating-slot')]
    .filter(s => s.offsetParent !== null && !s.parentElement.closest('.rating-slot'));
  document.addEventListener('keydown', (event) => {
    const t = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && t.type !== 'radio'))) return;
    const slots = visibleSlots();
    if (/^[1-4]$/.test(event.key)) {
      const slot = picked !== null ? slots[picked]
        : slots.find(s => !s.querySelector('input[type=radio]:checked')) || slots[slots.length - 1];
      if (slot) slot.querySelectorAll('input[type=radio]')[Number(event.key) - 1].click();
      picked = null;
      event.preventDefault();
    } else if (/^[a-h]$/.test(event.key) && event.key.charCodeAt(0) - 97 < slots.length) {
      picked = event.key.charCodeAt(0) - 97;
      slots[picked].scrollIntoView({block: 'center'});
    } else if ((event.key === 'Enter' && (!t || t.tagName !== 'BUTTON')) || event.key === 'n') {
      picked = null;
      document.querySelector('#save-next').click();
      event.preventDefault();
    } else if (event.key === 'p') {
      picked = null;
      document.querySelector('#previous').click();
    }
  });
}
"""


def serve(packet_dir: str, rater: int | None, port: int) -> None:
    """Serve one rater's packet on 127.0.0.1:PORT until interrupted."""
    sheet = RatingSheet(find_packet(packet_dir, rater))
    app = build_app(sheet)
    print(f"rater {sheet.rater}: {sheet.rated_count()} of {len(sheet.items)} items rated", flush=True)
    app.launch(server_name="127.0.0.1", server_port=port, js=KEYBOARD_JS, css=CSS, **LAUNCH_OPTIONS)
