import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { runStoreConformance } from '../src/store/conformance.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { SqliteStore } from '../src/store/sqlite/sqliteStore.js';

const dir = mkdtempSync(join(tmpdir(), 'baton-store-'));
let n = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

runStoreConformance('memory', async ({ clock }) => new MemoryStore({ clock }));
runStoreConformance('sqlite :memory:', async ({ clock }) => SqliteStore.open(':memory:', { clock }));
runStoreConformance('sqlite file', async ({ clock }) => SqliteStore.open(join(dir, `store-${n++}.db`), { clock }));
