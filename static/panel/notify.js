// The bell in the navigation bar: its number of unread notifications, kept live over
// /ws/notifications/ (the number now on connecting, then with each new notification and
// each one read on another page). The socket opens again after a drop.
(function () {
  "use strict";
  var bell = document.querySelector("[data-bell]");
  if (!bell || !window.WebSocket) return;
  var badge = bell.querySelector("[data-bell-count]");
  function show(unread) {
    badge.textContent = unread > 99 ? "99+" : String(unread);
    badge.hidden = unread === 0;
    bell.dataset.unread = String(unread);
    bell.title = "Notifications: " + unread + " unread";
  }
  var delay = 1000;
  function open() {
    var proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    var ws = new WebSocket(proto + "//" + window.location.host + bell.dataset.ws);
    ws.onmessage = function (e) {
      var message = JSON.parse(e.data);
      if (typeof message.unread === "number") show(message.unread);
    };
    ws.onopen = function () { delay = 1000; bell.dataset.live = "1"; };
    ws.onclose = function (e) {
      delete bell.dataset.live;
      if (e.code === 4400 || e.code === 4401 || e.code === 4404) return;
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }
  open();
})();
