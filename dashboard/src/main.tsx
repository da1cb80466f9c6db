/** The dashboard's entry point. */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.tsx';
import { polyfillStreamIteration } from './data.ts';
import './style.css';

polyfillStreamIteration();
createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
