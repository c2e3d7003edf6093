package bus

import "time"

// parseTime converts an RFC 3339 time to Unix milliseconds as decodeTime
// does (time.Parse with time.RFC3339Nano): directly for the strict form
// time.Parse itself reads first, with time.Parse for anything else.
func parseTime(s []byte) (int64, bool) {
	if ms, ok := parseRFC3339(s); ok {
		return ms, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(s))
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}

// parseRFC3339 reads 2006-01-02T15:04:05[.999999999](Z|±07:00) with the
// checks of the time package's own fast path for it (parseRFC3339 in
// time/format_rfc3339.go): fields in range, the day in its month.
func parseRFC3339(s []byte) (int64, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return 0, false
	}
	ok := true
	num := func(b []byte, lo, hi int) int {
		x := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				ok = false
				return lo
			}
			x = x*10 + int(c-'0')
		}
		if x < lo || x > hi {
			ok = false
			return lo
		}
		return x
	}
	year := num(s[0:4], 0, 9999)
	month := num(s[5:7], 1, 12)
	day := num(s[8:10], 1, daysIn(month, year))
	hour := num(s[11:13], 0, 23)
	minute := num(s[14:16], 0, 59)
	sec := num(s[17:19], 0, 59)
	if !ok || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	s = s[19:]
	nsec := 0
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		n := 1
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		// Nine digits at most count, as in time.parseNanoseconds.
		scale := 100_000_000
		for _, c := range s[1:min(n, 10)] {
			nsec += int(c-'0') * scale
			scale /= 10
		}
		s = s[n:]
	}
	offset := 0
	if len(s) != 1 || s[0] != 'Z' {
		if len(s) != len("-07:00") {
			return 0, false
		}
		hr := num(s[1:3], 0, 23)
		mm := num(s[4:6], 0, 59)
		if !ok || (s[0] != '-' && s[0] != '+') || s[3] != ':' {
			return 0, false
		}
		offset = (hr*60 + mm) * 60
		if s[0] == '-' {
			offset = -offset
		}
	}
	secs := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - int64(offset)
	return secs*1000 + int64(nsec/1_000_000), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysSinceEpoch counts the days from 1970-01-01 to a date of the
// proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
func daysSinceEpoch(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
