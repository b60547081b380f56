// A result table's scrolling grid: the column names (each sorts when clicked), their types, the summary strip
// and the page's rows, drawn from the HTML the kernel renders; and the table's paging keys. grid.py declares
// every message this module sends, and reads them.

/** @typedef {{kind: "sort", column: number} | {kind: "bar", column: number, bar: number}
 *            | {kind: "nulls", column: number}
 *            | {kind: "page", to: "first" | "previous" | "next" | "last"}} Message */

const KEYS = { PageDown: "next", PageUp: "previous", Home: "first", End: "last" };
const HINT = "Click the table, then PageDown, PageUp, Home and End turn its pages";
const PARTS = ["names", "types", "glances", "rows"];

function render({ model, el }) {
  /** @param {Message} message */
  const send = (message) => model.send(message);
  // The names, types and summaries stick to the top of the box that scrolls (el); the rows scroll under them.
  const head = document.createElement("div");
  head.className = "lm-head";
  const shown = {};
  for (const part of PARTS) {
    shown[part] = document.createElement("div");
    (part === "rows" ? el : head).appendChild(shown[part]);
  }
  el.insertBefore(head, shown.rows);
  const draws = PARTS.map((part) => {
    const draw = () => { shown[part].innerHTML = model.get(part); };
    draw();
    model.on(`change:${part}`, draw);
    return [part, draw];
  });

  el.addEventListener("click", (event) => {
    const mark = event.target.closest("[data-column]");
    if (!mark || !el.contains(mark)) return;
    const column = Number(mark.dataset.column);
    if (mark.dataset.sort !== undefined) send({ kind: "sort", column });
    else if (mark.dataset.bar !== undefined) send({ kind: "bar", column, bar: Number(mark.dataset.bar) });
    else if (mark.dataset.nulls !== undefined) send({ kind: "nulls", column });
  });

  // Keys page only while focus is inside this table and not in one of its text boxes or choices. Heard
  // before the notebook's own shortcuts (capture), and kept from them when used; any other key goes on.
  const onKey = (event) => {
    const to = KEYS[event.key];
    const table = el.closest(".lakemagic-widget");
    if (!to || !table || !table.contains(event.target) || event.altKey || event.ctrlKey || event.metaKey
        || event.shiftKey || event.target.closest("input, select, textarea")) return;
    event.preventDefault();
    event.stopPropagation();
    send({ kind: "page", to });
  };
  document.addEventListener("keydown", onKey, true);

  // The grid takes focus when clicked, and says what its keys do.
  el.tabIndex = 0;
  el.title = HINT;

  return () => {
    document.removeEventListener("keydown", onKey, true);
    for (const [part, draw] of draws) model.off(`change:${part}`, draw);
  };
}

export default { render };
