// Placeholder: the page's script.
document.getElementById('status').textContent = 'omoi server';
