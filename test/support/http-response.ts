/** The first HTTP/1.1 response in `text` (by Content-Length, chunked, or to the end); a JSON body parsed, else the text. */
export function parseHttpResponse(text: string): { status: number; headers: Record<string, string>; body: any } {
  const split = text.indexOf('\r\n\r\n');
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(text);
  if (split < 0 || !status) throw new Error(`not an HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
  const headers: Record<string, string> = {};
  for (const line of text.slice(0, split).split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const rest = text.slice(split + 4);
  const body = headers['content-length'] !== undefined ? rest.slice(0, Number(headers['content-length']))
    : headers['transfer-encoding'] === 'chunked' ? dechunk(rest) : rest;
  const json = headers['content-type'] === 'application/json';
  return { status: Number(status[1]), headers, body: json ? JSON.parse(body) : body };
}

function dechunk(text: string): string {
  let body = '';
  for (let at = 0; ;) {
    const line = text.indexOf('\r\n', at);
    const size = parseInt(text.slice(at, line), 16);
    if (line < 0 || !(size > 0)) return body;
    body += text.slice(line + 2, line + 2 + size);
    at = line + 2 + size + 2;
  }
}
