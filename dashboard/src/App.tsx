/**
 * The shell: login with any token (kept in sessionStorage, checked with
 * GET /api/v1/info, which says its role), the header with the cluster id
 * and who is signed in, and hash routing: #/ (overview),
 * #/services/<name>, #/nodes/<name>, #/audit (an admin's).
 */
import { useCallback, useEffect, useMemo, useState, type FormEvent } from 'react';
import type { ApiClient } from '../../src/api/client.ts';
import { nodeKind, serviceKind } from '../../src/api/kinds.ts';
import type { ClusterInfo, Node, Service } from '../../src/api/types.ts';
import { callerText, ClusterContext } from './cluster.ts';
import { makeClient, session, SessionContext, useInformer, type Session } from './data.ts';
import { errorText } from './format.ts';
import { href, Logo, Notice } from './components.tsx';
import { Overview } from './Overview.tsx';
import { ServicePage } from './ServicePage.tsx';
import { NodePage } from './NodePage.tsx';
import { AuditPage } from './AuditPage.tsx';

type Route = { page: 'overview' } | { page: 'audit' } | { page: 'service'; name: string } | { page: 'node'; name: string } | { page: 'missing'; path: string };

function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, '') || '/';
  let parts: string[];
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return { page: 'missing', path };
  }
  if (parts.length === 0) return { page: 'overview' };
  if (parts[0] === 'audit' && parts.length === 1) return { page: 'audit' };
  if (parts[0] === 'services' && parts.length === 2) return { page: 'service', name: parts[1]! };
  if (parts[0] === 'nodes' && parts.length === 2) return { page: 'node', name: parts[1]! };
  return { page: 'missing', path };
}

function useRoute(): Route {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return useMemo(() => parseRoute(hash), [hash]);
}

/** loginError words a failed token check for a person at the login form. */
function loginError(e: unknown): string {
  const code = (e as { code?: string })?.code;
  if (code === 'BATON_ERR_UNAUTHORIZED') return `Wrong token: the server did not accept it (${errorText(e)}). Use a token from baton token create, or the admin token the baton CLI uses.`;
  if (code === 'BATON_ERR_FORBIDDEN') return `This token may not use the dashboard: ${errorText(e)}`;
  return `Could not check the token: ${errorText(e)}`;
}

interface Authed {
  api: ApiClient;
  info: ClusterInfo;
}

export function App() {
  const [authed, setAuthed] = useState<Authed | null>(null);
  const [checking, setChecking] = useState(() => session.token() !== null);
  const [message, setMessage] = useState<string | undefined>();

  // A token kept from earlier in this tab: check it again.
  useEffect(() => {
    const token = session.token();
    if (!token) return;
    const api = makeClient(token);
    api
      .info()
      .then((info) => setAuthed({ api, info }))
      .catch((e) => {
        if ((e as { code?: string }).code === 'BATON_ERR_UNAUTHORIZED') session.clear();
        setMessage(loginError(e));
      })
      .finally(() => setChecking(false));
  }, []);

  const logout = useCallback((why?: string) => {
    session.clear();
    setAuthed(null);
    setMessage(why);
  }, []);

  if (checking) return <div className="splash">Connecting…</div>;
  if (!authed) {
    return (
      <Login
        message={message}
        onLogin={(a, token) => {
          session.save(token);
          setMessage(undefined);
          setAuthed(a);
        }}
      />
    );
  }
  return <Shell authed={authed} logout={logout} />;
}

function Login({ message, onLogin }: { message?: string; onLogin: (a: Authed, token: string) => void }) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(message);
  useEffect(() => setError(message), [message]);

  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    const t = token.trim();
    if (!t) return setError('Enter a token.');
    setBusy(true);
    setError(undefined);
    const api = makeClient(t);
    try {
      const info = await api.info();
      onLogin({ api, info }, t);
    } catch (e) {
      setError(loginError(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="login-page">
      <form className="login card" onSubmit={submit} data-testid="login-form">
        <h1>
          <Logo /> Baton
        </h1>
        <p className="muted">Sign in with a token: an admin's (the one the baton CLI uses: its context's token, or BATON_TOKEN), a deployer's or a viewer's (baton token create). The dashboard offers what its role may do.</p>
        <label htmlFor="token">Token</label>
        <input id="token" type="password" autoComplete="off" autoFocus placeholder="baton.xxxxxxxxxxxx.…" value={token} onChange={(e) => setToken(e.target.value)} data-testid="login-token" />
        <button type="submit" className="primary" disabled={busy} data-testid="login-submit">
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        {error ? (
          <Notice kind="error" testid="login-error">
            {error}
          </Notice>
        ) : null}
        <p className="muted small">The token is kept in this tab only (sessionStorage) until you sign out.</p>
      </form>
    </div>
  );
}

function Shell({ authed, logout }: { authed: Authed; logout: (why?: string) => void }) {
  const expired = useCallback((why: string) => logout(`Signed out: the server no longer accepts the token (${why}).`), [logout]);
  const sess: Session = useMemo(() => ({ api: authed.api, expired }), [authed.api, expired]);
  return (
    <SessionContext.Provider value={sess}>
      <ClusterShell info={authed.info} logout={logout} />
    </SessionContext.Provider>
  );
}

function ClusterShell({ info, logout }: { info: ClusterInfo; logout: (why?: string) => void }) {
  const route = useRoute();
  // Nodes and services are watched once for the whole app; pages watch their own tasks and events.
  const nodes = useInformer<Node>(nodeKind);
  const services = useInformer<Service>(serviceKind);
  const data = useMemo(() => ({ info, nodes, services }), [info, nodes, services]);
  const ready = nodes.items.filter((n) => n.status.state === 'ready').length;

  return (
    <ClusterContext.Provider value={data}>
      <header className="top">
        <a className="brand" href={href('/')}>
          <Logo /> Baton
        </a>
        <nav>
          <a href={href('/')} className={route.page === 'overview' ? 'active' : undefined} data-testid="nav-overview">
            Overview
          </a>
          {info.caller?.role === 'admin' ? (
            <a href={href('/audit')} className={route.page === 'audit' ? 'active' : undefined} data-testid="nav-audit">
              Audit log
            </a>
          ) : null}
        </nav>
        <div className="cluster-meta">
          <span title="cluster id">
            cluster <code data-testid="cluster-id">{info.clusterId}</code>
          </span>
          <span className="muted">
            v{info.version} · {info.storeBackend} · {ready}/{nodes.items.length} nodes ready
          </span>
          <span className="muted" data-testid="caller" data-role={info.caller?.role}>
            {callerText(info)}
          </span>
        </div>
        <button className="ghost" onClick={() => logout()} data-testid="logout">
          Sign out
        </button>
      </header>
      <main>
        {route.page === 'overview' ? <Overview /> : null}
        {route.page === 'service' ? <ServicePage key={route.name} name={route.name} /> : null}
        {route.page === 'node' ? <NodePage key={route.name} name={route.name} /> : null}
        {route.page === 'audit' ? (
          info.caller?.role === 'admin' ? (
            <AuditPage />
          ) : (
            <Notice kind="warn" testid="audit-not-allowed">
              The audit log is an admin's to read; this token is {callerText(info)}.
            </Notice>
          )
        ) : null}
        {route.page === 'missing' ? (
          <Notice kind="warn">
            Nothing at <code>{route.path}</code>. <a href={href('/')}>Back to the overview</a>.
          </Notice>
        ) : null}
      </main>
    </ClusterContext.Provider>
  );
}
