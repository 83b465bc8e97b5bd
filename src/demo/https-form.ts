import https from 'node:https';

/** POST a form over HTTPS with a client certificate, as a workload calls the issuer. */
export function postForm(url: string, form: Record<string, string>, tls: { ca: string; cert: string; key: string }): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      method: 'POST', ...tls, agent: false,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? {} : JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(new URLSearchParams(form).toString());
  });
}
