/**
 * Colours the SQL of `%%lakesql` cells and `%lakesql` lines as SQL in JupyterLab 4 and Notebook 7.
 *
 * A cell's language is chosen by its kernel (IPython), so the SQL would be parsed as Python. This
 * adds to every Python editor a layer of marks: the SQL's ranges are parsed by JupyterLab's own SQL
 * parser (its PostgreSQL dialect, which JupyterLab loads on demand: nothing of it is in this bundle),
 * their words are keywords when DuckDB says so, and all is styled by the editor's own highlighter,
 * so the colours follow the theme. The marks also carry CodeMirror's `tok-*` classes, which say
 * what each word is to anyone (and any test) reading the page.
 */

import { highlightingFor, language } from '@codemirror/language';
import { Extension, Prec, Range, Text } from '@codemirror/state';
import { Decoration, DecorationSet, EditorView, ViewPlugin, ViewUpdate } from '@codemirror/view';
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { EditorExtensionRegistry, IEditorExtensionRegistry, IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { Parser } from '@lezer/common';
import { classHighlighter, Highlighter, highlightTree, Tag, tags } from '@lezer/highlight';

import { DUCKDB_KEYWORDS } from './keywords';

const KEYWORDS = new Set(DUCKDB_KEYWORDS.split(' '));
// The parser's word tokens whose kind DuckDB's keywords decide (its types stay types).
const WORDS = new Set(['Keyword', 'Identifier']);

const CELL_MAGIC = /^\s*%%lakesql\b/;
// IPython reads `%lakesql ...` at a line's start, or after `name =`; the SQL follows the magic's
// options and an optional `VAR <<`, from a statement's first keyword on.
const LINE_MAGIC = /^\s*(?:[\w.]+\s*=\s*)?%lakesql\b/;
const STATEMENT_START = /\b(?:SELECT|WITH|FROM|VALUES|TABLE|DESCRIBE|SUMMARIZE|SHOW|PIVOT|UNPIVOT|EXPLAIN)\b/i;
// Resets what the Python parse of the same text styled (a `#` read as a comment, a name read as a builtin).
const SQL_REGION = 'lakemagic-sql';

let sqlParser: Parser | null = null;
// Editors made before JupyterLab loaded its SQL parser: each is told once it has.
const waiting = new Set<() => void>();

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
  private parser: Parser | null = sqlParser;
  private readonly wake = () => this.view.dispatch({}); // an empty transaction: update() sees the parser

  constructor(private readonly view: EditorView) {
    this.decorations = this.build(view);
    if (this.parser === null) {
      waiting.add(this.wake);
    }
  }

  destroy(): void {
    waiting.delete(this.wake);
  }

  update(update: ViewUpdate): void {
    const reconfigured = update.transactions.some(transaction => transaction.reconfigured);
    if (update.docChanged || reconfigured || this.parser !== sqlParser) {
      this.parser = sqlParser;
      this.decorations = this.build(update.view);
    }
  }

  private build(view: EditorView): DecorationSet {
    const state = view.state;
    if (this.parser === null || state.facet(language)?.name !== 'python') {
      return Decoration.none;
    }
    const highlighters: Highlighter[] = [{ style: found => highlightingFor(state, found) }, classHighlighter];
    const classesOf = (tag: Tag) => highlighters.map(highlighter => highlighter.style([tag]) ?? '').join(' ').trim();
    const marks: Range<Decoration>[] = [];
    for (const { from, to } of sqlRanges(state.doc)) {
      marks.push(Decoration.mark({ class: SQL_REGION }).range(from, to));
      const sql = state.doc.sliceString(from, to);
      const tree = this.parser.parse(sql);
      const mark = (start: number, end: number, classes: string) => {
        marks.push(Decoration.mark({ class: classes }).range(from + start, from + end));
      };
      highlightTree(tree, highlighters, (start, end, classes) => {
        if (!WORDS.has(tree.resolveInner(start, 1).name)) {
          mark(start, end, classes);
        }
      });
      // Words: keywords when DuckDB's (SUMMARIZE, QUALIFY), names otherwise (PostgreSQL's keyword `count`).
      tree.iterate({
        enter: node => {
          if (WORDS.has(node.name)) {
            const keyword = KEYWORDS.has(sql.slice(node.from, node.to).toLowerCase());
            const classes = classesOf(keyword ? tags.keyword : tags.name);
            if (classes !== '') {
              mark(node.from, node.to, classes);
            }
          }
        }
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
  requires: [IEditorExtensionRegistry, IEditorLanguageRegistry],
  activate: (app: JupyterFrontEnd, extensions: IEditorExtensionRegistry, languages: IEditorLanguageRegistry) => {
    extensions.addExtension({
      name: 'lakemagic:sql-highlighting',
      factory: () => EditorExtensionRegistry.createImmutableExtension(sqlHighlighting)
    });
    void languages.getLanguage('PostgreSQL').then(found => {
      sqlParser = found?.support?.language.parser ?? null;
      if (sqlParser === null) {
        console.warn('lakemagic: JupyterLab has no SQL parser; %%lakesql cells keep Python colours');
        return;
      }
      const editors = [...waiting];
      waiting.clear();
      editors.forEach(wake => wake());
    });
  }
};

export default plugin;
