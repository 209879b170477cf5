#!/usr/bin/env node
'use strict';
// Entry point of the `rotor` command. The TypeScript sources compile to dist/ when
// `npm install` runs the package's prepare script.
const path = require('node:path');
const fs = require('node:fs');

const main = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
if (!fs.existsSync(main)) {
  console.error(`rotor is not built: ${main} is missing. Run \`npm install\` (or \`npm run build\`) in ${path.dirname(__dirname)}.`);
  process.exit(2);
}
require(main);
