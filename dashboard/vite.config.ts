/**
 * Builds the dashboard (React) into dist/dashboard/, which the server serves
 * at / (src/server/dashboard.ts). Run from the repository root:
 * `vite build --config dashboard/vite.config.ts` (npm run build does).
 * The dashboard imports the shared typed client from src/api; Vite resolves
 * its `.js` import suffixes to the `.ts` sources.
 */
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  root: 'dashboard',
  base: '/',
  plugins: [react()],
  build: {
    outDir: '../dist/dashboard',
    emptyOutDir: true,
    // The typed client brings zod (its spec schemas); the whole bundle is a few hundred kB.
    chunkSizeWarningLimit: 1024,
  },
  server: {
    // `npx vite --config dashboard/vite.config.ts` with BATON_SERVER set proxies the API to a running server.
    proxy: process.env.BATON_SERVER ? { '/api': { target: process.env.BATON_SERVER, secure: false, changeOrigin: true } } : undefined,
  },
});
