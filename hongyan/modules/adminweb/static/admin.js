// The admin page's only script (served from the package, CSP 'self'): a "copy" button next to
// a new invitation's link, and a reload of the page every minute while it shows the dashboard
// and no form is being filled in, so that the chart and the sessions stay current.
'use strict';
document.addEventListener('DOMContentLoaded', () => {
    for (const button of document.querySelectorAll('button[data-copy]')) {
        button.addEventListener('click', () => {
            const target = document.getElementById(button.dataset.copy);
            if (target && navigator.clipboard) navigator.clipboard.writeText(target.textContent);
        });
    }
    const dashboard = document.querySelector('main[data-refresh]');
    if (!dashboard) return;
    let typing = false;
    for (const input of document.querySelectorAll('input')) {
        input.addEventListener('input', () => { typing = true; });
    }
    setInterval(() => {
        if (!typing && !document.querySelector('.notice, .error')) location.assign('/admin/');
    }, 60000);
});
