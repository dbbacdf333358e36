// Hongyan's web client: starts Converse.js with the settings the server put in the page
// (#hongyan-settings), completing the connection URLs from the page's own address.
import converse from './dist/converse.min.js';

const settings = JSON.parse(document.getElementById('hongyan-settings').textContent);
const absolute = (url, scheme) => {
    if (/^[a-z]+:\/\//i.test(url)) return url;
    const secure = window.location.protocol === 'https:';
    return `${scheme}${secure ? 's' : ''}://${window.location.host}${url}`;
};
const options = Object.assign({}, settings.converse);
if (settings.transport === 'bosh') {
    options.bosh_service_url = absolute(settings.bosh_url, 'http');
} else {
    options.websocket_url = absolute(settings.websocket_url, 'ws');
}

// Converse's own footer on the login screen shows its sponsors' logos from their web site; this
// page loads nothing from elsewhere, so a plain one takes its place (Converse defines an element
// only when no other has its name).
class Footer extends HTMLElement {
    connectedCallback() {
        if (this.childElementCount) return;
        const p = document.createElement('p');
        p.className = 'brand-subtitle subdued text-center py-3';
        p.textContent = `Converse.js ${converse.VERSION_NAME || ''} · served by Hongyan`;
        this.appendChild(p);
    }
}
if (!customElements.get('converse-footer')) customElements.define('converse-footer', Footer);

converse.initialize(options);
