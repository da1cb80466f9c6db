/**
 * Private registries' pure parts: which registry an image names (Docker's
 * rule), a login's secret name, a Docker config's login for a registry (what
 * a kubernetes.io/dockerconfigjson Secret holds), a pull failure told as
 * authentication, not found or unreachable, and Kubernetes' imagePullSecrets
 * read into every container's pull secret.
 */
import { describe, expect, it } from 'vitest';
import { dockerConfigCredential, registryOf, registrySecretName } from '../src/api/registries.js';
import { pullFailure } from '../src/agent/docker/images.js';
import { readKubernetes } from '../src/manifest/kubernetes/index.js';

describe('registries', () => {
  it("names an image's registry as Docker does", () => {
    expect(registryOf('nginx')).toBe('docker.io');
    expect(registryOf('library/nginx:1.27')).toBe('docker.io');
    expect(registryOf('ghcr.io/org/app:1')).toBe('ghcr.io');
    expect(registryOf('127.0.0.1:5000/priv/busybox:1')).toBe('127.0.0.1:5000');
    expect(registryOf('localhost/app')).toBe('localhost');
    expect(registrySecretName('127.0.0.1:5000')).toBe('registry-127.0.0.1-5000');
  });

  it("reads a registry's login out of a Docker config, by auth or by user and password", () => {
    const auth = Buffer.from('me:s3cret').toString('base64');
    const config = { auths: { 'https://index.docker.io/v1/': { auth }, 'ghcr.io': { username: 'you', password: 'pw' } } };
    expect(dockerConfigCredential(config, 'docker.io')).toEqual({ serveraddress: 'docker.io', username: 'me', password: 's3cret' });
    expect(dockerConfigCredential(config, 'ghcr.io')).toEqual({ serveraddress: 'ghcr.io', username: 'you', password: 'pw' });
    expect(dockerConfigCredential(config, 'quay.io')).toBeUndefined();
    expect(dockerConfigCredential({ auths: 'no' }, 'docker.io')).toBeUndefined();
  });

  it('tells a pull failure as authentication, not found or unreachable', () => {
    const img = '127.0.0.1:5000/priv/app:1';
    expect(pullFailure(img, 'Head "https://127.0.0.1:5000/v2/priv/app/manifests/1": no basic auth credentials', false)).toMatch(/^pulling 127\.0\.0\.1:5000\/priv\/app:1: registry 127\.0\.0\.1:5000 refused an anonymous pull \(authentication\)/);
    expect(pullFailure(img, 'unauthorized: authentication required', true)).toMatch(/refused the credentials of its pull secret \(authentication\)/);
    expect(pullFailure(img, 'manifest for 127.0.0.1:5000/priv/app:1 not found: manifest unknown', true)).toMatch(/has no such image \(not found\)/);
    expect(pullFailure(img, 'Get "https://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused', true)).toMatch(/could not be reached \(unreachable\)/);
    expect(pullFailure(img, 'something else', true)).toBe('pulling 127.0.0.1:5000/priv/app:1: something else');
  });

  it("reads Kubernetes' imagePullSecrets into every container's pull secret, or refuses one it cannot use", () => {
    const dockerconfig = Buffer.from(JSON.stringify({ auths: { 'ghcr.io': { auth: Buffer.from('a:b').toString('base64') } } })).toString('base64');
    const pod = (secretDoc: string) => `${secretDoc}apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: shop}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      imagePullSecrets: [{name: regcred}]
      containers:
      - {name: main, image: ghcr.io/org/app:1}
      - {name: side, image: ghcr.io/org/side:1}
`;
    const r = readKubernetes([{ name: 'm.yaml', text: pod(`apiVersion: v1\nkind: Secret\nmetadata: {name: regcred, namespace: shop}\ntype: kubernetes.io/dockerconfigjson\ndata: {.dockerconfigjson: ${dockerconfig}}\n---\n`) }]);
    expect(r.errors).toEqual([]);
    const spec = r.services[0]!.spec;
    expect(spec.container.pullSecret).toEqual({ source: 'shop_regcred..dockerconfigjson' });
    expect(spec.sidecars![0]!.container.pullSecret).toEqual({ source: 'shop_regcred..dockerconfigjson' });
    expect(r.secrets.map((s) => s.name)).toContain('shop_regcred..dockerconfigjson');
    const missing = readKubernetes([{ name: 'm.yaml', text: pod('') }]);
    expect(missing.errors).toEqual([expect.objectContaining({ path: 'documents[0].spec.template.spec.imagePullSecrets[0]', message: expect.stringMatching(/imagePullSecrets` naming Secret "regcred".*baton registry login SERVER and apply with --with-registry-auth/) })]);
  });
});
