// Mixed-language example, tool (JavaScript): render rows as a Markdown table.
// Read-only and deterministic; logs the table's size and reports the cells it rendered.
import { log, reportUsage } from 'tether:plugin/tool-host@0.1.0';

const escapeCell = (v) => String(v).replaceAll('|', '\\|').replaceAll('\n', ' ');

export const tool = {
  describe() {
    return {
      name: 'markdown-table',
      description: 'Renders a header and rows of cells as a Markdown table.',
      inputSchema: JSON.stringify({
        type: 'object',
        required: ['header', 'rows'],
        properties: { header: { type: 'array' }, rows: { type: 'array', items: { type: 'array' } } },
      }),
      outputSchema: JSON.stringify({ type: 'object', properties: { markdown: { type: 'string' } } }),
      effect: 'read-only',
    };
  },
  call(input) {
    const { header, rows } = JSON.parse(input);
    if (!Array.isArray(header) || !Array.isArray(rows) || !rows.every(Array.isArray)) {
      throw { payload: { kind: 'invalid-input', message: 'expected {"header": [...], "rows": [[...], ...]}' } };
    }
    const line = (cells) => `| ${cells.map(escapeCell).join(' | ')} |`;
    const markdown = [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
    log('debug', `${rows.length} rows x ${header.length} columns`);
    reportUsage('cells', rows.length * header.length);
    return JSON.stringify({ markdown });
  },
};
