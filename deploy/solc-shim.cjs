#!/usr/bin/env node
// A `solc`-compatible front for the npm `solc` package (solcjs), for py-solc-x.
//
// It answers the two calls py-solc-x makes:
//   --version                 prints "Version: X.Y.Z+commit.H..." as the native solc does;
//   --standard-json [...]     reads Standard JSON on stdin, writes Standard JSON on stdout.
//
// Why not the solcjs command line itself:
//   * it prints a stray ">>> Cannot retry compilation with SMT ..." line before its JSON;
//   * it rejects --allow-paths, which py-solc-x passes when asked;
//   * it exits right after writing, which cuts long output (about 62 KB+) short on a pipe.
// Here the compiler is called through its JavaScript API, only JSON reaches stdout, unknown
// path flags are accepted and ignored, and the process exits only once stdout has drained.
//
// Imports are read from --base-path (default: the current directory), so remappings such
// as "@openzeppelin/=node_modules/@openzeppelin/" resolve to the project's node_modules.
'use strict';

const fs = require('fs');
const path = require('path');

function loadSolc() {
  try {
    return require('solc');
  } catch (err) {
    process.stderr.write(
      'wattledger solc shim: the npm package "solc" is not installed.\n' +
        'Run `npm ci` in the project root (it installs solc, OpenZeppelin and anvil).\n'
    );
    process.exit(3);
  }
}

function finish(text, code) {
  process.stdout.write(text, () => process.exit(code));
}

function parseArgs(argv) {
  const opts = { version: false, standardJson: false, basePath: process.cwd() };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--version') opts.version = true;
    else if (arg === '--standard-json') opts.standardJson = true;
    else if (arg === '--base-path') opts.basePath = argv[++i];
    else if (arg.startsWith('--base-path=')) opts.basePath = arg.slice('--base-path='.length);
    else if (arg === '--allow-paths' || arg === '--include-path') i += 1; // value ignored
    else if (arg.startsWith('--allow-paths=') || arg.startsWith('--include-path=')) continue;
    else {
      process.stderr.write(`wattledger solc shim: unsupported argument ${arg}\n`);
      process.exit(2);
    }
  }
  return opts;
}

function readStdin() {
  return fs.readFileSync(0, 'utf8');
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const solc = loadSolc();
  if (opts.version) {
    finish(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`, 0);
    return;
  }
  if (!opts.standardJson) {
    process.stderr.write('wattledger solc shim: only --version and --standard-json are supported\n');
    process.exit(2);
  }
  const base = path.resolve(opts.basePath);
  const findImports = (importPath) => {
    const candidate = path.resolve(base, importPath);
    if (!candidate.startsWith(base + path.sep)) {
      return { error: `import outside the base path: ${importPath}` };
    }
    try {
      return { contents: fs.readFileSync(candidate, 'utf8') };
    } catch (err) {
      return { error: `file not found: ${importPath} (looked in ${candidate})` };
    }
  };
  const output = solc.compile(readStdin(), { import: findImports });
  finish(output, 0);
}

main();
