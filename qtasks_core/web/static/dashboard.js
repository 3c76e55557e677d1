// Confirmation for destructive actions. A file, not inline `onsubmit`: the dashboard's
// Content-Security-Policy allows scripts from its own origin only.
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
