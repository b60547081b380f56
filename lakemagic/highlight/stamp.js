// Writes the SHA-256 of the sources the build was made from, so a test can tell a stale committed build.
const crypto = require('crypto');
const fs = require('fs');

const SOURCES = ['package.json', 'package-lock.json', 'tsconfig.json', 'src/index.ts', 'src/keywords.ts'];
const hash = crypto.createHash('sha256');
for (const name of SOURCES) {
  hash.update(fs.readFileSync(name));
}
fs.writeFileSync('labextension.sha256', hash.digest('hex') + '\n');
