// The gravitex-mcp video player, an MCP Apps view. It talks to its host only
// through the ext-apps App class: tool results arrive as notifications, and
// check_video_task / download_video are called through the host.
import {
  App,
  applyDocumentTheme,
  applyHostFonts,
  applyHostStyleVariables,
} from "@modelcontextprotocol/ext-apps";

const RUNNING = new Set(["submitted", "queued", "in_progress", "unknown"]);
// Short waits keep each host call well inside a host's request time-out.
const POLL_WAIT_SECONDS = 15;
const MAX_POLLS = 80;

const $ = (id) => document.getElementById(id);
const stage = $("stage");
const video = $("video");

const state = {
  taskId: null,
  model: null,
  polling: false,
  // One fresh link per failure: a link that fails again right after is not stale.
  refreshedFor: null,
  mediaUrl: null,
};

function setStatus(text, kind) {
  $("status").textContent = text;
  $("status").dataset.kind = kind;
  document.body.dataset.state = kind;
}

function setWaiting(text, stageState = "running") {
  $("waiting-text").textContent = text;
  stage.dataset.state = stageState;
}

function setTask(sc) {
  if (sc.task_id) state.taskId = sc.task_id;
  if (sc.model) state.model = sc.model;
  $("title").textContent = state.model ? `Gravitex · ${state.model}` : "Gravitex video";
  $("task").textContent = state.taskId || "";
}

function textOf(result) {
  return (result.content || [])
    .filter((block) => block.type === "text")
    .map((block) => block.text)
    .join("\n");
}

function describeProbe(probe) {
  if (!probe) return "";
  const parts = [];
  if (probe.duration_seconds != null) parts.push(`${Number(probe.duration_seconds).toFixed(1)} s`);
  if (probe.width && probe.height) parts.push(`${probe.width}×${probe.height}`);
  if (probe.fps) parts.push(`${Math.round(probe.fps)} fps`);
  if (probe.video_codec) parts.push(probe.video_codec);
  if (probe.has_audio != null) parts.push(probe.has_audio ? "audio" : "no audio");
  return parts.join(" · ");
}

function showDetails(sc) {
  const lines = [];
  const probe = describeProbe(sc.probe);
  if (probe) lines.push(probe);
  if (sc.path) lines.push(`Saved as ${sc.path}`);
  $("detail").textContent = lines.join(" — ");
  const notes = $("notes");
  notes.replaceChildren();
  for (const note of sc.notes || []) {
    const item = document.createElement("li");
    item.textContent = note;
    notes.append(item);
  }
}

function showError(message) {
  setStatus("failed", "error");
  setWaiting(message || "Something went wrong.", "error");
  delete stage.dataset.playing;
}

function play(sc) {
  showDetails(sc);
  if (state.mediaUrl === sc.media_url && stage.dataset.playing !== undefined) return;
  state.mediaUrl = sc.media_url;
  setStatus("ready", "done");
  stage.dataset.playing = "";
  stage.dataset.state = "playing";
  video.src = sc.media_url;
  video.muted = true; // hosts allow muted autoplay; the controls unmute
  video.play().catch(() => {
    // Autoplay refused: the controls are there for a click.
  });
}

async function callTool(name, args) {
  const result = await app.callServerTool({ name, arguments: args });
  return { result, sc: result.structuredContent || {} };
}

// A finished task's saved file, with a fresh media link (download_video returns
// the file already on disk, or downloads it again if it is gone).
async function fetchSaved() {
  setStatus("saving", "running");
  setWaiting("Fetching the saved video…");
  const { result, sc } = await callTool("download_video", { task_id: state.taskId });
  if (result.isError) return showError(textOf(result));
  if (!sc.media_url) {
    showDetails(sc);
    return showError("The video is saved, but this server gives no media links (GRAVITEX_MEDIA=off).");
  }
  play(sc);
}

async function poll() {
  if (state.polling) return;
  state.polling = true;
  try {
    for (let i = 0; i < MAX_POLLS; i++) {
      const { result, sc } = await callTool("check_video_task", {
        task_id: state.taskId,
        wait_seconds: POLL_WAIT_SECONDS,
        download: true,
      });
      if (!result.structuredContent) return showError(textOf(result));
      if (await settle(sc, result)) return;
    }
    showError("Still not finished; ask the assistant to check the task again later.");
  } catch (error) {
    showError(`Checking the task failed: ${error?.message || error}`);
  } finally {
    state.polling = false;
  }
}

// Shows one result; true when nothing more is to be done for this task.
async function settle(sc, result) {
  setTask(sc);
  if (sc.media_url) {
    play(sc);
    return true;
  }
  if (sc.status === "failed") {
    showError(sc.error?.message || textOf(result));
    return true;
  }
  if (sc.status === "succeeded") {
    await fetchSaved();
    return true;
  }
  setStatus(String(sc.status || "waiting").replace("_", " "), "running");
  setWaiting(`Generating… (${String(sc.status).replace("_", " ")})`);
  return false;
}

async function onResult(result) {
  const sc = result.structuredContent || {};
  if (sc.dry_run) {
    setTask(sc);
    setStatus("dry run", "idle");
    setWaiting("Dry run: nothing was sent.", "idle");
    return;
  }
  if (!sc.task_id) return showError(textOf(result));
  setTask(sc);
  state.refreshedFor = null;
  if (!(await settle(sc, result)) && RUNNING.has(sc.status)) await poll();
}

video.addEventListener("error", async () => {
  // A link goes stale when the file moved or the loopback server restarted on
  // another port: ask the server for a fresh one, once per link.
  if (!state.taskId || state.refreshedFor === state.mediaUrl) {
    return showError("The video cannot be played here.");
  }
  state.refreshedFor = state.mediaUrl;
  try {
    await fetchSaved();
  } catch (error) {
    showError(`Refreshing the link failed: ${error?.message || error}`);
  }
});

function applyContext(context) {
  if (!context) return;
  if (context.theme) {
    applyDocumentTheme(context.theme);
    document.documentElement.dataset.theme = context.theme;
  }
  if (context.styles?.variables) applyHostStyleVariables(context.styles.variables);
  if (context.styles?.css?.fonts) applyHostFonts(context.styles.css.fonts);
}

const app = new App({ name: "gravitex-player", version: "1.0.0" }, {}, { autoResize: true });
app.ontoolinput = ({ arguments: args }) => {
  if (args?.task_id) setTask({ task_id: args.task_id });
  if (args?.model) setTask({ model: args.model });
  setStatus("working", "running");
  setWaiting("Waiting for the tool…");
};
app.ontoolresult = (result) => {
  onResult(result).catch((error) => showError(String(error?.message || error)));
};
app.ontoolcancelled = ({ reason }) => showError(reason || "The tool call was cancelled.");
app.onhostcontextchanged = applyContext;
app.connect().then(
  () => applyContext(app.getHostContext()),
  (error) => showError(`Could not connect to the host: ${error?.message || error}`),
);
