package setexpr_test

import (
	"context"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/setexpr"
)

func Example() {
	x, err := setexpr.Parse("vip & !churned | new_7d")
	if err != nil {
		panic(err)
	}
	fmt.Println(x, x.Names())
	sets := map[string]*roaring.Bitmap{
		"vip":     roaring.BitmapOf(1, 2, 3),
		"churned": roaring.BitmapOf(2),
		"new_7d":  roaring.BitmapOf(7),
	}
	users, err := x.Eval(context.Background(), sets, 10)
	if err != nil {
		panic(err)
	}
	fmt.Println(users.ToArray())

	_, err = setexpr.Parse("vip & (new_7d |")
	fmt.Println(err)
	fmt.Println(err.(*setexpr.Error).Caret())
	// Output:
	// ((vip & !churned) | new_7d) [vip churned new_7d]
	// [1 3 7]
	// column 16: expected a segment id, '!' or '(', found the end
	//  | vip & (new_7d |
	//  | ...............^
}
