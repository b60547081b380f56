// The summary strip above a result table's columns, and the table's paging keys (strip.py declares every
// message this module sends, and reads them).

/** @typedef {{kind: "bar", column: number, bar: number} | {kind: "nulls", column: number}
 *            | {kind: "page", to: "first" | "previous" | "next" | "last"}} Message */

const KEYS = { PageDown: "next", PageUp: "previous", Home: "first", End: "last" };
const HINT = "Click the table, then PageDown, PageUp, Home and End turn its pages";

function render({ model, el }) {
  /** @param {Message} message */
  const send = (message) => model.send(message);
  const draw = () => { el.innerHTML = model.get("value"); };
  draw();
  model.on("change:value", draw);

  el.addEventListener("click", (event) => {
    const mark = event.target.closest("[data-column]");
    if (!mark || !el.contains(mark)) return;
    const column = Number(mark.dataset.column);
    if (mark.dataset.bar !== undefined) send({ kind: "bar", column, bar: Number(mark.dataset.bar) });
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

  // The grid takes focus when clicked, and says what its keys do. The strip is drawn before the table
  // puts it in the page: wait until it is there.
  let frame = requestAnimationFrame(function focusable() {
    const grid = el.closest(".lm-scroll");
    if (!grid) { frame = requestAnimationFrame(focusable); return; }
    grid.tabIndex = 0;
    grid.title = HINT;
  });

  return () => {
    document.removeEventListener("keydown", onKey, true);
    cancelAnimationFrame(frame);
    model.off("change:value", draw);
  };
}

export default { render };
