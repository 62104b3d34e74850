"""The Gradio page of ``hyperinverter serve``: widgets wired to a :class:`~.session.ServeSession`.

All the work lives in :mod:`.session`; this module only builds the page, turns errors into messages
shown in it, and launches the server. Gradio is imported when a page is built, not when this module is
imported (``pip install 'hyperinverter[serve]'``).

Layout: an upload, then *input | phase I | HyperInverter* with MSE/PSNR/SSIM; an *Edit* tab with one slider
per direction (each move re-renders from the cached codes, no re-encoding) and the edit latency; an
*Interpolate* tab (a second upload, frames and a GIF); downloads of PNGs and codes.

A page session's ``gr.State`` holds only a key; the codes behind it live in the session's
:class:`~.session.SessionStore` (bounded: compact records, idle expiry, a cap on sessions).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import HyperInverterError
from .images import UploadError
from .defaults import DEFAULT_REFINE_STEPS, MAX_REFINE_STEPS
from .session import ServeSession, format_metrics, release_freed_memory

log = logging.getLogger(__name__)

#: The most requests waiting in the queue by default; more get the page's "busy" message.
DEFAULT_QUEUE_SIZE = 8
#: The largest upload the server accepts (bytes, or a Gradio size string).
DEFAULT_MAX_FILE_SIZE = "50mb"
EXPECTED_ERRORS = (UploadError, HyperInverterError, ValueError)


def import_gradio():
    """The ``gradio`` module with analytics off, or a :class:`HyperInverterError` naming the extra to install."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no usage reports, no version checks
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio as gr
    except ImportError as e:
        raise HyperInverterError(f"'hyperinverter serve' needs Gradio: pip install 'hyperinverter[serve]' ({e})") from e
    return gr


def _message(error: BaseException) -> str:
    """A message for the page: expected errors as they are, others with their type (and logged)."""
    if isinstance(error, EXPECTED_ERRORS):
        return str(error)
    log.exception("unexpected error in a request")
    return f"unexpected error ({type(error).__name__}: {error}); the server keeps running"


def page_css(session: ServeSession) -> str:
    """CSS of the page: small model outputs are scaled up without blurring."""
    css = ".hi-result img { object-fit: contain; }\n#hi-latency textarea { font-family: monospace; }\n"
    if session.resolution < 128:
        css += ".hi-result img { image-rendering: pixelated; }\n"
    return css


class _Handlers:
    """The event functions of the page (closures over the session and Gradio)."""

    def __init__(self, gr, session: ServeSession):
        self.gr = gr
        self.session = session

    def _warn(self, text: str) -> str:
        self.gr.Warning(text)
        return text

    def _shown(self, image, name: str):
        """A picture for a page widget as a path of its own (see :meth:`.session.OutputStore.image_file`: a PIL image
        handed to Gradio is cached with a non-atomic rewrite that equal pictures race on); None stays None."""
        if image is None:
            return None
        return str(self.session.outputs.image_file(image, name))

    def _edit_text(self, outcome) -> str:
        text = f"last edit {outcome.latency_ms:.1f} ms"
        if outcome.paste_ms is not None:
            text += f" (+ paste-back {outcome.paste_ms:.1f} ms)"
        return f"{text} | {self.session.latency_text()}"

    def _recall(self, key: Optional[str]):
        """``(record, None)`` for the page session's key, or ``(None, message)`` when there is no record."""
        if key is None:
            return None, "upload an image first"
        recon = self.session.recall(key)
        return (recon, None) if recon is not None else (None, self.session.released_message())

    def invert(self, key: Optional[str], path: Optional[str], *values):
        """Upload -> state key, 3 images, metrics, downloads, status, edit preview, latency, paste-back, and the
        refined picture cleared.

        The full reconstruction (images, the whole photo) lives only during this request; the page session
        keeps its compact record under a new key, in place of its previous one."""
        gr, skip = self.gr, self.gr.skip()
        if not path:
            return (skip,) * 11
        recon = outcome = None
        try:
            recon = self.session.invert_file(path)
            files = [str(p) for p in self.session.save_reconstruction(recon)]
            shown = [self._shown(recon.images[k], k) for k in ("input", "phase1", "hyperinverter")]
            kept = recon.compact(self.session.keep_photo_pixels)
            recon = None  # the images and the whole photo go now
            outcome = self.session.edit(kept, values, paste=kept.aligned)
            key = self.session.store.put(kept, replace=key)  # (after the work: a failed upload keeps the old one)
            status = "; ".join(kept.notes + [f"inverted in {kept.latency_ms:.0f} ms"])
            pasted = gr.update(value=self._shown(outcome.pasted, "photo"), visible=outcome.pasted is not None)
            out = (key, *shown, format_metrics(kept.metrics), files, status + "\n" + format_metrics_line(kept),
                   self._shown(outcome.image, "edit"), self._edit_text(outcome), pasted, None)
        except Exception as e:  # noqa: BLE001 - shown in the page, never a crash
            return (skip,) * 6 + (self._warn(_message(e)),) + (skip,) * 4
        finally:
            recon = outcome = None
            release_freed_memory()  # else this thread's allocator arena keeps the decoded upload's peak
        return out

    def refine(self, key, steps, *values):
        """Refine button -> N steps of per-image tuning from the kept codes; the page session then keeps the
        refined record (same key), so the sliders edit it. Outputs: key, refined image, metrics, status, edit
        preview, latency."""
        skip = self.gr.skip()
        recon, problem = self._recall(key)
        if recon is None:
            return (skip,) * 3 + (self._warn(problem),) + (skip,) * 2
        try:
            refined = self.session.refine(recon, int(steps))
            shown = self._shown(refined.images["refined"], "refined")
            kept = refined.compact(self.session.keep_photo_pixels)
            refined = None
            outcome = self.session.edit(kept, values)
            key = self.session.store.put(kept, replace=key)
        except Exception as e:  # noqa: BLE001 - shown in the page, never a crash
            return (skip,) * 3 + (self._warn(_message(e)),) + (skip,) * 2
        finally:
            release_freed_memory()
        return (key, shown, format_metrics(kept.metrics), format_metrics_line(kept), self._shown(outcome.image, "edit"),
                self._edit_text(outcome))

    def edit(self, key, *values):
        """Slider move -> edited image and latency (from the cached codes)."""
        skip = self.gr.skip()
        recon, problem = self._recall(key)
        if recon is None:
            return skip, problem
        try:
            outcome = self.session.edit(recon, values)
        except Exception as e:  # noqa: BLE001
            return skip, self._warn(_message(e))
        return self._shown(outcome.image, "edit"), self._edit_text(outcome)

    def paste(self, key, *values):
        """Slider release -> the edit pasted back into the photo (aligned faces only)."""
        skip = self.gr.skip()
        recon, _ = self._recall(key)
        if recon is None or not recon.aligned:
            return skip
        outcome = None
        try:
            outcome = self.session.edit(recon, values, paste=True)
            return self.gr.update(value=self._shown(outcome.pasted, "photo"), visible=True)
        except Exception as e:  # noqa: BLE001
            self._warn(_message(e))
            return skip
        finally:
            outcome = None
            release_freed_memory()  # the photo-sized paste buffers

    def reset(self, key):
        """All sliders to 0 and the unedited reconstruction."""
        zeros = [0.0] * len(self.session.directions)
        recon, problem = self._recall(key)
        if recon is None:
            return (*zeros, self.gr.skip(), problem)
        outcome = self.session.edit(recon, zeros)
        return (*zeros, self._shown(outcome.image, "edit"), self._edit_text(outcome))

    def save_edit(self, key, *values):
        """Write the current edit (PNG, codes, pasted photo) for download."""
        recon, problem = self._recall(key)
        if recon is None:
            return self.gr.skip(), self._warn(problem)
        try:
            files = self.session.save_edit(recon, values)
        except Exception as e:  # noqa: BLE001
            return self.gr.skip(), self._warn(_message(e))
        return [str(p) for p in files], f"saved {len(files)} files: " + ", ".join(p.name for p in files)

    def interpolate(self, key, path_b: Optional[str], steps):
        """Invert the second upload and interpolate from the current reconstruction to it."""
        skip = self.gr.skip()
        if key is None or not path_b:
            return skip, skip, skip, self._warn("upload both images first (the main image above and image B here)")
        recon, problem = self._recall(key)
        if recon is None:
            return skip, skip, skip, self._warn(problem)
        try:
            b = self.session.invert_file(path_b)
            notes = "; ".join(f"B: {n}" for n in b.notes)
            result = self.session.interpolate(recon, b, steps=int(steps))
        except Exception as e:  # noqa: BLE001
            return skip, skip, skip, self._warn(_message(e))
        finally:
            b = recon = None  # B's photo goes before the memory is handed back
            release_freed_memory()
        return (str(result.gif), self._shown(result.strip, "frames"), [str(result.gif)],
                f"{len(result.frames)} frames in {result.latency_ms:.0f} ms" + (f"; {notes}" if notes else ""))


def format_metrics_line(recon) -> str:
    """One status line with the PSNR of both phases (and of the refined result)."""
    m = recon.metrics
    line = f"PSNR phase I {m['phase1']['psnr']:.2f} dB, HyperInverter {m['hyperinverter']['psnr']:.2f} dB"
    if "refined" in m:
        line += f", refined ({m['refined']['steps']} steps) {m['refined']['psnr']:.2f} dB"
    return line


def build_app(session: ServeSession, queue_size: int = DEFAULT_QUEUE_SIZE, title: str = "HyperInverter"):
    """The Gradio ``Blocks`` page for ``session``, with a bounded queue (one model pass at a time).

    Args:
        session: the loaded model and directions.
        queue_size: the most requests that wait; more are refused with Gradio's "busy" message.
        title: the browser tab's title.
    """
    if not isinstance(queue_size, int) or queue_size < 1:
        raise ValueError(f"queue_size must be a positive integer, got {queue_size!r}")
    gr = import_gradio()
    h = _Handlers(gr, session)
    image = dict(type="pil", format="png", interactive=False, elem_classes=["hi-result"], height=260)
    model_jobs = dict(concurrency_id="model")  # every model pass shares one worker

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# {title}: invert and edit an image\n{session.describe()}")
        if session.notes:
            gr.Markdown("\n".join(f"- {n}" for n in session.notes), elem_id="hi-notes")
        state = gr.State(None, delete_callback=session.forget)  # a key into session.store, not the codes
        with gr.Row():
            upload = gr.File(label="Image A: upload a photo or image", file_types=["image"], elem_id="hi-upload",
                             scale=1)
            status = gr.Textbox(label="Messages", lines=3, interactive=False, elem_id="hi-status", scale=2)
        with gr.Row():
            img_in = gr.Image(label="Input (aligned or centre-cropped)", elem_id="hi-input", **image)
            img_w = gr.Image(label="Phase I (W code only)", elem_id="hi-phase1", **image)
            img_h = gr.Image(label="HyperInverter (W + Δθ)", elem_id="hi-recon", **image)
            img_refined = gr.Image(label="HyperInverter + refine (press Refine)", elem_id="hi-refined", **image)
        with gr.Row():
            refine_steps = gr.Slider(1, MAX_REFINE_STEPS, value=DEFAULT_REFINE_STEPS, step=1, label="Refine steps",
                                     info="per-image tuning from HyperInverter's answer (PTI's recipe, w kept): "
                                          "more detail for a few seconds", elem_id="hi-refine-steps", scale=3)
            refine_btn = gr.Button("Refine", elem_id="hi-refine", scale=1)
        metrics = gr.Markdown(elem_id="hi-metrics")
        recon_files = gr.File(label="Downloads: reconstruction, phase I, input (PNG) and codes (.safetensors)",
                              file_count="multiple", interactive=False, elem_id="hi-files")

        with gr.Tab("Edit"):
            with gr.Row():
                with gr.Column(scale=1):
                    if session.directions:
                        gr.Markdown("Strengths count in units of each direction's default step, as `--strength` "
                                    "in `hyperinverter edit` and `demo`: 1 is its recommended edit, -1 the "
                                    "opposite one, 0 the reconstruction.", elem_id="hi-strength-help")
                    sliders = []
                    for i, d in enumerate(session.directions):
                        r = session.slider_range(d)
                        rows = "all rows" if d.layers is None else f"rows {d.layers[0]}..{d.layers[1] - 1}"
                        sliders.append(gr.Slider(-r, r, value=0.0, step=round(r / 60, 4), label=d.name,
                                                 info=f"{d.kind}, {rows}", elem_id=f"hi-dir-{i}"))
                    if not sliders:
                        gr.Markdown("No edit directions: put direction files in the model's `directions/` folder "
                                    "or pass `--directions DIR`.")
                    with gr.Row():
                        reset = gr.Button("Reset", elem_id="hi-reset")
                        save = gr.Button("Save edited result", variant="primary", elem_id="hi-save")
                with gr.Column(scale=1):
                    img_edit = gr.Image(label="Edited (live preview)", elem_id="hi-edit", **image)
                    latency = gr.Textbox(label="Latency", interactive=False, elem_id="hi-latency")
                with gr.Column(scale=1):
                    img_paste = gr.Image(label="Edit pasted back into the photo", type="pil", format="png",
                                         interactive=False, visible=False, elem_id="hi-paste")
            edit_files = gr.File(label="Downloads: edited PNG, codes (and photo)", file_count="multiple",
                                 interactive=False, elem_id="hi-edit-files", height=150)

        with gr.Tab("Interpolate"):
            with gr.Row():
                upload_b = gr.File(label="Image B", file_types=["image"], elem_id="hi-upload-b")
                with gr.Column():
                    steps = gr.Slider(2, 16, value=8, step=1, label="Frames", elem_id="hi-steps")
                    go = gr.Button("Interpolate A → B", variant="primary", elem_id="hi-interpolate")
            with gr.Row():
                gif = gr.Image(label="Interpolation (GIF)", type="filepath", interactive=False, elem_id="hi-gif")
                strip = gr.Image(label="Frames", interactive=False, elem_id="hi-strip",
                                 **{k: v for k, v in image.items() if k not in ("interactive", "height")})
            interp_files = gr.File(label="Downloads: GIF", file_count="multiple", interactive=False,
                                   elem_id="hi-interp-files", height=100)

        upload.upload(h.invert, [state, upload, *sliders],
                      [state, img_in, img_w, img_h, metrics, recon_files, status, img_edit, latency, img_paste,
                       img_refined],
                      api_name="invert", **model_jobs)
        for s in sliders:
            s.input(h.edit, [state, *sliders], [img_edit, latency], api_visibility="private",
                    trigger_mode="always_last", show_progress="hidden", **model_jobs)
            if session.aligner is not None:
                s.release(h.paste, [state, *sliders], img_paste, api_visibility="private", trigger_mode="always_last",
                          show_progress="minimal", **model_jobs)
        refine_btn.click(h.refine, [state, refine_steps, *sliders],
                         [state, img_refined, metrics, status, img_edit, latency], api_name="refine", **model_jobs)
        reset.click(h.reset, state, [*sliders, img_edit, latency], api_visibility="private", **model_jobs)
        save.click(h.save_edit, [state, *sliders], [edit_files, status], api_name="save_edit", **model_jobs)
        go.click(h.interpolate, [state, upload_b, steps], [gif, strip, interp_files, status], api_name="interpolate",
                 **model_jobs)
    demo.queue(max_size=queue_size, default_concurrency_limit=1)
    return demo


@dataclass
class RunningApp:
    """A page served in the background (:func:`start`): its ``url``; :meth:`close` stops the server."""

    demo: Any
    url: str
    session: ServeSession

    def close(self) -> None:
        self.demo.close(verbose=False)


def _launch_kwargs(session: ServeSession, host: str, port: Optional[int], max_file_size) -> dict:
    # Gradio keeps a little per browser session too (a copy of the page's config): as many as ours, plus room
    # for sessions that never upload (its default is 10,000).
    capacity = max(64, 4 * session.store.max_sessions)
    return dict(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True,
                state_session_capacity=capacity,
                allowed_paths=[str(session.outputs.root)], max_file_size=max_file_size, css=page_css(session),
                ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False, footer_links=["settings"])


def start(session: ServeSession, host: str = "127.0.0.1", port: Optional[int] = None,
          queue_size: int = DEFAULT_QUEUE_SIZE, max_file_size=DEFAULT_MAX_FILE_SIZE, quiet: bool = True) -> RunningApp:
    """Serve the page in a background thread and return at once (for tests and notebooks).

    Args:
        session: the loaded model.
        host: the address to bind (127.0.0.1: this machine only).
        port: the port; None lets Gradio pick a free one from 7860 up.
        queue_size: see :func:`build_app`.
        max_file_size: the largest upload accepted (e.g. ``"50mb"``).
        quiet: no startup banner.
    """
    demo = build_app(session, queue_size=queue_size)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=quiet, **_launch_kwargs(session, host, port, max_file_size))
    return RunningApp(demo, url, session)


@contextlib.contextmanager
def stop_on_terminate(names: tuple[str, ...] = ("SIGTERM", "SIGHUP")):
    """Within the block, SIGTERM and SIGHUP stop the program as Ctrl+C does.

    Their handler raises ``KeyboardInterrupt`` in the main thread (which Gradio's server loop takes as Ctrl+C),
    so ``finally`` clauses run and temporary files are removed; the default action would end the process on
    the spot. Further signals of these kinds are ignored while it stops; the previous handlers come back after
    the block. Yields a list that gets the name of the signal received. Outside the main thread, or for signals
    this system lacks, nothing changes.

    Args:
        names: the signals to handle, by name.
    """
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    numbers = [getattr(signal, n) for n in names if hasattr(signal, n)]

    def handler(signum, frame):
        for number in numbers:
            signal.signal(number, signal.SIG_IGN)
        received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt(f"stopped by {received[-1]}")

    previous = {}
    try:
        for number in numbers:
            previous[number] = signal.signal(number, handler)
        yield received
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def serve_forever(session: ServeSession, host: str = "127.0.0.1", port: int = 7860,
                  queue_size: int = DEFAULT_QUEUE_SIZE, max_file_size=DEFAULT_MAX_FILE_SIZE) -> None:
    """Serve the page until interrupted (Ctrl+C, or SIGTERM/SIGHUP within :func:`stop_on_terminate`), then
    remove the session's temporary files (Gradio removes the uploads and outputs it cached)."""
    demo = build_app(session, queue_size=queue_size)
    try:
        demo.launch(prevent_thread_lock=False, quiet=False, **_launch_kwargs(session, host, port, max_file_size))
    finally:
        try:
            demo.close(verbose=False)
        finally:
            session.close()


__all__ = ["DEFAULT_QUEUE_SIZE", "RunningApp", "build_app", "import_gradio", "page_css", "serve_forever", "start",
           "stop_on_terminate"]
