/**
 * Colours the SQL of `%%lakesql` cells and `%lakesql` lines as SQL in JupyterLab 4 and Notebook 7.
 *
 * A cell's language is chosen by its kernel (IPython), so the SQL would be parsed as Python. This
 * adds to every Python editor a layer of marks: the SQL's ranges are parsed as DuckDB's SQL
 * (CodeMirror's PostgreSQL dialect with DuckDB's own keywords) and styled by the editor's own
 * highlighter, so the colours follow the theme. The marks also carry CodeMirror's `tok-*` classes,
 * which say what each word is to anyone (and any test) reading the page.
 */

import { highlightingFor, language } from '@codemirror/language';
import { PostgreSQL, SQLDialect } from '@codemirror/lang-sql';
import { Extension, Prec, Range, Text } from '@codemirror/state';
import { Decoration, DecorationSet, EditorView, ViewPlugin, ViewUpdate } from '@codemirror/view';
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';
import { classHighlighter, Highlighter, highlightTree } from '@lezer/highlight';

import { DUCKDB_KEYWORDS } from './keywords';

const DUCKDB = SQLDialect.define({ ...PostgreSQL.spec, keywords: DUCKDB_KEYWORDS });

const CELL_MAGIC = /^\s*%%lakesql\b/;
// IPython reads `%lakesql ...` at a line's start, or after `name =`; the SQL follows the magic's
// options and an optional `VAR <<`, from a statement's first keyword on.
const LINE_MAGIC = /^\s*(?:[\w.]+\s*=\s*)?%lakesql\b/;
const STATEMENT_START = /\b(?:SELECT|WITH|FROM|VALUES|TABLE|DESCRIBE|SUMMARIZE|SHOW|PIVOT|UNPIVOT|EXPLAIN)\b/i;
// Resets what the Python parse of the same text styled (a `#` read as a comment, a name read as a builtin).
const SQL_REGION = 'lakemagic-sql';

/** Where the SQL is in a Python editor's text: the body of a `%%lakesql` cell, or the SQL of `%lakesql` lines. */
export function sqlRanges(doc: Text): { from: number; to: number }[] {
  const first = doc.line(1);
  if (CELL_MAGIC.test(first.text)) {
    return doc.lines > 1 ? [{ from: first.to + 1, to: doc.length }] : [];
  }
  const ranges = [];
  for (let number = 1; number <= doc.lines; number++) {
    const line = doc.line(number);
    const magic = LINE_MAGIC.exec(line.text);
    if (magic === null) {
      continue;
    }
    const rest = line.text.slice(magic[0].length);
    const start = STATEMENT_START.exec(rest);
    if (start !== null) {
      ranges.push({ from: line.from + magic[0].length + start.index, to: line.to });
    }
  }
  return ranges;
}

class SqlMarks {
  decorations: DecorationSet;

  constructor(view: EditorView) {
    this.decorations = this.build(view);
  }

  update(update: ViewUpdate): void {
    if (update.docChanged || update.transactions.some(transaction => transaction.reconfigured)) {
      this.decorations = this.build(update.view);
    }
  }

  private build(view: EditorView): DecorationSet {
    const state = view.state;
    if (state.facet(language)?.name !== 'python') {
      return Decoration.none;
    }
    const themed: Highlighter = { style: tags => highlightingFor(state, tags) };
    const marks: Range<Decoration>[] = [];
    for (const { from, to } of sqlRanges(state.doc)) {
      marks.push(Decoration.mark({ class: SQL_REGION }).range(from, to));
      const tree = DUCKDB.language.parser.parse(state.doc.sliceString(from, to));
      highlightTree(tree, [themed, classHighlighter], (start, end, classes) => {
        marks.push(Decoration.mark({ class: classes }).range(from + start, from + end));
      });
    }
    return Decoration.set(marks, true);
  }
}

/** The marks, inside Python's own (highest precedence: drawn innermost), so their colours win. */
const sqlHighlighting: Extension = [
  Prec.highest(ViewPlugin.fromClass(SqlMarks, { decorations: plugin => plugin.decorations })),
  EditorView.baseTheme({
    [`.${SQL_REGION}`]: { color: 'var(--jp-content-font-color1)', fontWeight: 'normal', fontStyle: 'normal' }
  })
];

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'lakemagic:sql-highlighting',
  description: 'Colours the SQL of %%lakesql cells and %lakesql lines as SQL.',
  autoStart: true,
  requires: [IEditorExtensionRegistry],
  activate: (app: JupyterFrontEnd, extensions: IEditorExtensionRegistry) => {
    extensions.addExtension({
      name: 'lakemagic:sql-highlighting',
      factory: () => EditorExtensionRegistry.createImmutableExtension(sqlHighlighting)
    });
  }
};

export default plugin;
