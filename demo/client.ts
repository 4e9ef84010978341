/**
 * The demo's application: runs inside the registered demo cgroup and asks the
 * service address for a page N times (with one header when given). It knows nothing of Kmesh.
 */
import { get } from 'node:http';

const [url = '', countText = '100', header = ''] = process.argv.slice(2);
// "name: value", or nothing
const headers = header ? { [header.slice(0, header.indexOf(':'))]: header.slice(header.indexOf(':') + 1).trim() } : {};

function fetchOnce(): Promise<string> {
  return new Promise((resolve) => {
    get(url, { agent: false, timeout: 2000, headers }, (res) => {
      let body = '';
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve(body.trim()));
    }).on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
  });
}

// The demo moves this process into the cgroup, then says go.
await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
process.stdin.destroy();
const answers: string[] = [];
for (let i = 0; i < Number(countText); i++) answers.push(await fetchOnce());
process.stdout.write(`${JSON.stringify(answers)}\n`);
