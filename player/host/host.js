// A minimal MCP Apps host for the browser test: it renders one view in a
// sandboxed iframe under the CSP the resource asks for, and speaks the host
// side of the protocol through ext-apps' AppBridge. Tool calls the view makes
// are handed to window.hostCallTool, which the test wires to a real server.
import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";

// The CSP a host derives from _meta.ui.csp: nothing from anywhere except the
// inline page itself and what resourceDomains admits.
function cspFor(csp) {
  const clean = (list) => (list || []).filter((d) => typeof d === "string" && !/[;\s'"]/.test(d));
  const resources = clean(csp?.resourceDomains).join(" ");
  const connect = clean(csp?.connectDomains).join(" ");
  return [
    "default-src 'none'",
    "script-src 'unsafe-inline'",
    "style-src 'unsafe-inline'",
    `img-src data: blob: ${resources}`.trim(),
    `media-src data: blob: ${resources}`.trim(),
    `font-src data: ${resources}`.trim(),
    connect ? `connect-src ${connect}` : "connect-src 'none'",
    "frame-src 'none'",
    "object-src 'none'",
    "base-uri 'none'",
  ].join("; ");
}

function withCsp(html, csp) {
  const meta = `<meta http-equiv="Content-Security-Policy" content="${cspFor(csp)}">`;
  return html.replace(/<head[^>]*>/i, (head) => `${head}${meta}`);
}

window.hostLog = [];

window.mountPlayer = async ({ html, csp, toolName, toolInput, toolResult }) => {
  document.getElementById("call").textContent = `${toolName}(${JSON.stringify(toolInput)})`;
  const iframe = document.createElement("iframe");
  iframe.setAttribute("sandbox", "allow-scripts");
  iframe.setAttribute("allow", "autoplay");
  iframe.title = "player";
  document.getElementById("slot").append(iframe);

  const bridge = new AppBridge(
    null,
    { name: "gravitex-test-host", version: "1.0.0" },
    { serverTools: {}, openLinks: {}, logging: {} },
    {
      hostContext: {
        theme: "light",
        displayMode: "inline",
        availableDisplayModes: ["inline"],
        platform: "web",
        toolInfo: { tool: { name: toolName, inputSchema: { type: "object" } } },
      },
    },
  );
  bridge.oncalltool = async (params) => {
    window.hostLog.push(`call ${params.name}`);
    return await window.hostCallTool(params.name, params.arguments || {});
  };
  bridge.onsizechange = ({ height }) => {
    if (height) iframe.style.height = `${Math.min(Math.max(height, 200), 900)}px`;
  };
  bridge.onloggingmessage = (params) => window.hostLog.push(`log ${JSON.stringify(params)}`);
  const initialized = new Promise((resolve) => {
    bridge.oninitialized = () => resolve();
  });

  // Listen before the view loads: it says ui/initialize as soon as it runs.
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  iframe.srcdoc = withCsp(html, csp);
  await initialized;
  window.hostLog.push("initialized");
  await bridge.sendToolInput({ arguments: toolInput });
  await bridge.sendToolResult(toolResult);
  window.hostLog.push("result sent");
};
