// Query key for servers with authentication on (docs/security.md). Asked once per browser tab and kept in
// sessionStorage (gone when the tab closes; never in a URL, a cookie or localStorage), sent as
// `Authorization: Bearer KEY` on API calls and as a WebSocket subprotocol on /ws/live (a browser cannot set
// headers on a WebSocket, and a key in the URL would end up in logs).

const STORAGE_KEY = 'oglog.queryKey';
export const WS_PROTOCOL = 'oglog.v1';
export const WS_KEY_PROTOCOL = 'oglog.key.';
// Characters a key may have (it travels in a header token).
const KEY_SHAPE = /^[A-Za-z0-9._~+\/=-]{16,512}$/;

export function getKey() {
  try {
    return window.sessionStorage.getItem(STORAGE_KEY) || '';
  } catch {
    return ''; // storage disabled: the key is asked again on each load
  }
}

function storeKey(key) {
  try {
    if (key) window.sessionStorage.setItem(STORAGE_KEY, key);
    else window.sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage disabled: nothing kept
  }
}

// Headers for fetch(): the key if one is stored.
export function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// Subprotocols for new WebSocket(url, protocols): none without a key.
export function wsProtocols() {
  const key = getKey();
  return key ? [WS_PROTOCOL, WS_KEY_PROTOCOL + key] : [];
}

// The server answered 401: forget a stored key (unknown or revoked) and ask for one; saving reloads the page
// so every view starts over with it. `reason` is the server's problem detail (shown as text).
export function requireKey(reason) {
  const dialog = document.getElementById('auth-dialog');
  if (!dialog || dialog.open) return;
  const hadKey = Boolean(getKey());
  storeKey('');
  document.getElementById('auth-reason').textContent = hadKey
    ? `The stored key was refused (${reason}). Enter a key with the query scope.`
    : 'This server requires an API key with the query scope (oglog keys create --scope query).';
  document.getElementById('auth-error').textContent = '';
  dialog.showModal();
  document.getElementById('auth-key').focus();
}

export function initAuth() {
  const form = document.getElementById('auth-form');
  const forget = document.getElementById('auth-forget');
  forget.hidden = !getKey();
  forget.addEventListener('click', () => {
    storeKey('');
    window.location.reload();
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const key = document.getElementById('auth-key').value.trim();
    if (!KEY_SHAPE.test(key)) {
      document.getElementById('auth-error').textContent = 'That does not look like a key (16+ characters, no spaces).';
      return;
    }
    storeKey(key);
    window.location.reload();
  });
}
