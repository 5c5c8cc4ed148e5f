package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hitless-dev/hitless/api/v1alpha1"
)

func TestWindow(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	w := func(days []string, start string, d time.Duration) *v1alpha1.MaintenanceWindow {
		return &v1alpha1.MaintenanceWindow{Days: days, Start: start, Duration: metav1.Duration{Duration: d}, TimeZone: "Europe/Paris"}
	}
	// 2026-12-05 is a Saturday.
	for _, tc := range []struct {
		name     string
		w        *v1alpha1.MaintenanceWindow
		now      time.Time
		open     bool
		nextOpen time.Time
	}{
		{"inside a daily window", w(nil, "02:00", 2*time.Hour), at("2026-12-05 03:00"), true, at("2026-12-05 02:00")},
		{"at the opening", w(nil, "02:00", 2*time.Hour), at("2026-12-05 02:00"), true, at("2026-12-05 02:00")},
		{"at the closing", w(nil, "02:00", 2*time.Hour), at("2026-12-05 04:00"), false, at("2026-12-06 02:00")},
		{"before today's opening", w(nil, "22:00", time.Hour), at("2026-12-05 21:00"), false, at("2026-12-05 22:00")},
		{"past midnight, opened yesterday", w(nil, "22:00", 4*time.Hour), at("2026-12-06 01:00"), true, at("2026-12-05 22:00")},
		{"weekends only, on Saturday", w([]string{"Sat", "Sun"}, "01:00", 3*time.Hour), at("2026-12-05 02:00"), true, at("2026-12-05 01:00")},
		{"weekends only, on Monday", w([]string{"Sat", "Sun"}, "01:00", 3*time.Hour), at("2026-12-07 02:00"), false, at("2026-12-12 01:00")},
		{"a window longer than a day", w([]string{"Fri"}, "20:00", 60*time.Hour), at("2026-12-07 07:00"), true, at("2026-12-04 20:00")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open, next := window(tc.w, tc.now)
			if open != tc.open || !next.Equal(tc.nextOpen) {
				t.Errorf("window at %s: open %v, opening %s; want %v, %s", tc.now, open, next, tc.open, tc.nextOpen)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		spec   v1alpha1.NodeRollSpec
		reason string
	}{
		{"open", v1alpha1.NodeRollSpec{}, ""},
		{"paused", v1alpha1.NodeRollSpec{Paused: true}, reasonPaused},
		{"outside its window", v1alpha1.NodeRollSpec{MaintenanceWindow: &v1alpha1.MaintenanceWindow{Start: "01:00", Duration: metav1.Duration{Duration: time.Hour}}}, reasonOutsideWindow},
		{"inside its window", v1alpha1.NodeRollSpec{MaintenanceWindow: &v1alpha1.MaintenanceWindow{Start: "11:30", Duration: metav1.Duration{Duration: time.Hour}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nr := &v1alpha1.NodeRoll{Spec: tc.spec}
			why, reason, _ := closed(nr, now)
			if (why == "") != (tc.reason == "") {
				t.Fatalf("closed: %q, want a reason %q", why, tc.reason)
			}
			if why != "" && reason != tc.reason {
				t.Errorf("reason %s, want %s", reason, tc.reason)
			}
		})
	}
}
