/**
 * Output formats of the report commands (`rotor inventory`, `rotor audit`): an aligned text
 * table for terminals, Markdown for tickets and wikis, CSV for spreadsheets. JSON is built by
 * each command from typed values, so it is not a string table.
 */

export const reportFormats = ['table', 'json', 'markdown', 'csv'] as const;
export type ReportFormat = (typeof reportFormats)[number];

/** Column headers and rows of cells, already formatted as text. */
export interface TextReport {
  headers: string[];
  rows: string[][];
}

export function renderTextReport(report: TextReport, format: Exclude<ReportFormat, 'json'>): string {
  switch (format) {
    case 'table':
      return renderTable(report);
    case 'markdown':
      return renderMarkdown(report);
    case 'csv':
      return renderCsv(report);
  }
}

// Columns padded to their widest cell and separated by two spaces, like `kubectl get`, so the
// output stays readable in narrow terminals and easy to grep.
function renderTable({ headers, rows }: TextReport): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((cells) => cells[column].length)));
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd();
  return [line(headers), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

function renderMarkdown({ headers, rows }: TextReport): string {
  const escape = (cell: string): string => cell.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
  const line = (cells: string[]): string => `| ${cells.map(escape).join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

// RFC 4180: a cell with a comma, quote or line break is quoted, and quotes inside are doubled.
function renderCsv({ headers, rows }: TextReport): string {
  const escape = (cell: string): string => (/[",\r\n]/.test(cell) ? `"${cell.replace(/"/g, '""')}"` : cell);
  return [headers, ...rows].map((cells) => cells.map(escape).join(',')).join('\r\n');
}
