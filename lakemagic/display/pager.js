// A result table's pager: first, previous, next and last, the page size, where the page is, and the button that
// opens the table's tools. pager.py declares every message this module sends, and reads them. The parts wear
// ipywidgets' own classes, so they look like the notebook's other controls in every theme.

/** @typedef {{kind: "page", to: "first" | "previous" | "next" | "last"} | {kind: "size", rows: number}
 *            | {kind: "tools"}} Message */

const TURNS = [
  ["first", "First", "angle-double-left", "Home"], ["previous", "Previous", "angle-left", "PageUp"],
  ["next", "Next", "angle-right", "PageDown"], ["last", "Last", "angle-double-right", "End"],
];

function button(label, icon, tooltip, onClick) {
  const part = document.createElement("button");
  part.className = "jupyter-widgets jupyter-button widget-button";
  part.style.width = "auto";
  part.style.flex = "0 0 auto";
  part.title = tooltip;
  const glyph = document.createElement("i");
  glyph.className = `fa fa-${icon}`;
  part.append(glyph, label);
  part.addEventListener("click", onClick);
  return part;
}

function render({ model, el }) {
  /** @param {Message} message */
  const send = (message) => model.send(message);
  const row = document.createElement("div");  // the parts in a row, wrapping in a narrow window
  row.style.cssText = "display: flex; flex-flow: row wrap; align-items: center";
  el.append(row);
  const turns = TURNS.map(([to, label, icon, key]) =>
    [to, button(label, icon, `${label} (${key})`, () => send({ kind: "page", to }))]);

  const size = document.createElement("div");
  size.className = "jupyter-widgets widget-inline-hbox widget-dropdown";
  size.style.cssText = "width: 160px; flex: 0 0 auto";
  const sizeLabel = document.createElement("label");
  sizeLabel.className = "widget-label";
  sizeLabel.textContent = sizeLabel.title = "rows/page";
  const choice = document.createElement("select");
  size.append(sizeLabel, choice);
  choice.addEventListener("change", () => send({ kind: "size", rows: Number(choice.value) }));

  const position = document.createElement("div");
  position.className = "jupyter-widgets widget-inline-hbox widget-label";
  position.style.width = "auto";
  position.style.flex = "0 0 auto";
  const tools = button("Filter, profile, go to, export", "sliders", "Filter, profile, go to, export",
                       () => send({ kind: "tools" }));
  row.append(...turns.map(([, part]) => part), size, position, tools);

  const draw = () => {
    const atStart = model.get("at_start"), atEnd = model.get("at_end");
    for (const [to, part] of turns) part.disabled = to === "first" || to === "previous" ? atStart : atEnd;
    const chosen = model.get("size");
    choice.replaceChildren(...model.get("sizes").map((rows) => new Option(String(rows), String(rows), false, rows === chosen)));
    position.textContent = model.get("position");
    tools.style.display = model.get("tools_shown") ? "none" : "";
  };
  draw();
  const traits = ["at_start", "at_end", "size", "sizes", "position", "tools_shown"];
  for (const trait of traits) model.on(`change:${trait}`, draw);
  return () => { for (const trait of traits) model.off(`change:${trait}`, draw); };
}

export default { render };
