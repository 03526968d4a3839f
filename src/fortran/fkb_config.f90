!! The `key=value` options of one layer record, with typed accessors that report errors
!! naming the layer, and the percent-encoding used for values in `.fkb` headers.
!!
!! Every accessor marks its key as used, so that a loader can refuse options it did not
!! understand (`unused_key`) instead of silently ignoring them.
module fkb_config
  use iso_fortran_env, only: real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, set_error
  implicit none
  private
  public :: fkb_config_t, percent_encode, percent_decode, real_text, int_text

  type :: kv_t
    character(len=:), allocatable :: key, value
    logical :: used = .false.
    logical :: list = .false.   !! a comma-separated list: items encoded one by one
  end type kv_t

  type :: fkb_config_t
    character(len=:), allocatable :: where   !! e.g. "layer 'dense_1' (dense)", for messages
    type(kv_t), allocatable :: items(:)
    integer :: n = 0
  contains
    procedure :: set => cfg_set
    procedure :: has => cfg_has
    procedure :: get_text => cfg_get_text
    procedure :: get_int => cfg_get_int
    procedure :: get_real => cfg_get_real
    procedure :: get_bool => cfg_get_bool
    procedure :: unused_key => cfg_unused_key
    procedure :: to_text => cfg_to_text
  end type fkb_config_t

contains

  subroutine cfg_set(self, key, value, list)
    !! Adds key=value (value not encoded), replacing an earlier value of the key. With
    !! list=.true. the value is a comma-separated list whose commas are kept when written
    !! (docs/format.md: lists are comma-separated, each item percent-encoded on its own).
    class(fkb_config_t), intent(inout) :: self
    character(len=*), intent(in) :: key, value
    logical, intent(in), optional :: list
    type(kv_t), allocatable :: grown(:)
    integer :: i
    logical :: is_list
    is_list = .false.
    if (present(list)) is_list = list
    if (.not. allocated(self%items)) allocate(self%items(8))
    do i = 1, self%n
      if (self%items(i)%key == key) then
        self%items(i)%value = value
        self%items(i)%list = is_list
        return
      end if
    end do
    if (self%n == size(self%items)) then
      allocate(grown(2 * self%n))
      grown(1:self%n) = self%items(1:self%n)
      call move_alloc(grown, self%items)
    end if
    self%n = self%n + 1
    self%items(self%n)%key = key
    self%items(self%n)%value = value
    self%items(self%n)%used = .false.
    self%items(self%n)%list = is_list
  end subroutine cfg_set

  integer function find(self, key)
    class(fkb_config_t), intent(in) :: self
    character(len=*), intent(in) :: key
    integer :: i
    find = 0
    do i = 1, self%n
      if (self%items(i)%key == key) then
        find = i
        return
      end if
    end do
  end function find

  logical function cfg_has(self, key)
    class(fkb_config_t), intent(in) :: self
    character(len=*), intent(in) :: key
    cfg_has = find(self, key) > 0
  end function cfg_has

  subroutine cfg_get_text(self, key, value, stat, msg, default)
    class(fkb_config_t), intent(inout) :: self
    character(len=*), intent(in) :: key
    character(len=:), allocatable, intent(out) :: value
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=*), intent(in), optional :: default
    integer :: i
    stat = FKB_OK
    i = find(self, key)
    if (i > 0) then
      self%items(i)%used = .true.
      value = self%items(i)%value
    else if (present(default)) then
      value = default
    else
      value = ''
      call set_error(stat, msg, FKB_ERR_FORMAT, self%where // ": missing option '" // key // "'")
    end if
  end subroutine cfg_get_text

  subroutine cfg_get_int(self, key, value, stat, msg, default)
    class(fkb_config_t), intent(inout) :: self
    character(len=*), intent(in) :: key
    integer(int64), intent(out) :: value
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer(int64), intent(in), optional :: default
    character(len=:), allocatable :: text
    integer :: ios
    value = 0
    if (present(default) .and. .not. self%has(key)) then
      value = default
      stat = FKB_OK
      return
    end if
    call self%get_text(key, text, stat, msg)
    if (stat /= FKB_OK) return
    if (verify(text, '0123456789-') /= 0 .or. len(text) == 0 .or. len(text) > 19) then
      ios = 1
    else
      read (text, *, iostat=ios) value
    end if
    if (ios /= 0) call set_error(stat, msg, FKB_ERR_FORMAT, self%where // ": option '" // &
                                 key // "' must be an integer, got '" // text // "'")
  end subroutine cfg_get_int

  subroutine cfg_get_real(self, key, value, stat, msg, default)
    class(fkb_config_t), intent(inout) :: self
    character(len=*), intent(in) :: key
    real(real64), intent(out) :: value
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    real(real64), intent(in), optional :: default
    character(len=:), allocatable :: text
    integer :: ios
    value = 0
    if (present(default) .and. .not. self%has(key)) then
      value = default
      stat = FKB_OK
      return
    end if
    call self%get_text(key, text, stat, msg)
    if (stat /= FKB_OK) return
    ios = 1
    if (len(text) > 0 .and. verify(text, '0123456789+-.eEinfatyINFATY') == 0) &
      read (text, *, iostat=ios) value
    if (ios /= 0) call set_error(stat, msg, FKB_ERR_FORMAT, self%where // ": option '" // &
                                 key // "' must be a number, got '" // text // "'")
  end subroutine cfg_get_real

  subroutine cfg_get_bool(self, key, value, stat, msg, default)
    class(fkb_config_t), intent(inout) :: self
    character(len=*), intent(in) :: key
    logical, intent(out) :: value
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    logical, intent(in), optional :: default
    character(len=:), allocatable :: text
    value = .false.
    if (present(default) .and. .not. self%has(key)) then
      value = default
      stat = FKB_OK
      return
    end if
    call self%get_text(key, text, stat, msg)
    if (stat /= FKB_OK) return
    if (text == '1') then
      value = .true.
    else if (text /= '0') then
      call set_error(stat, msg, FKB_ERR_FORMAT, self%where // ": option '" // key // &
                     "' must be 0 or 1, got '" // text // "'")
    end if
  end subroutine cfg_get_bool

  function cfg_unused_key(self) result(key)
    !! The first key no accessor asked for ('' if none).
    class(fkb_config_t), intent(in) :: self
    character(len=:), allocatable :: key
    integer :: i
    key = ''
    do i = 1, self%n
      if (.not. self%items(i)%used) then
        key = self%items(i)%key
        return
      end if
    end do
  end function cfg_unused_key

  function cfg_to_text(self) result(text)
    !! " key=value key=value" with values percent-encoded, in insertion order.
    class(fkb_config_t), intent(in) :: self
    character(len=:), allocatable :: text
    integer :: i
    integer :: a, b
    text = ''
    do i = 1, self%n
      text = text // ' ' // self%items(i)%key // '='
      if (.not. self%items(i)%list) then
        text = text // percent_encode(self%items(i)%value)
        cycle
      end if
      associate (v => self%items(i)%value)
        a = 1
        do b = 1, len(v) + 1
          if (b > len(v)) then
            text = text // percent_encode(v(a:b - 1))
          else if (v(b:b) == ',') then
            text = text // percent_encode(v(a:b - 1)) // ','
            a = b + 1
          end if
        end do
      end associate
    end do
  end function cfg_to_text

  pure function percent_encode(raw) result(enc)
    !! Encodes %, space, =, comma and control bytes as %XX (docs/format.md).
    character(len=*), intent(in) :: raw
    character(len=:), allocatable :: enc
    character(len=*), parameter :: hex = '0123456789ABCDEF'
    integer :: i, c
    enc = ''
    do i = 1, len(raw)
      c = ichar(raw(i:i))
      if (c < 33 .or. c == 127 .or. raw(i:i) == '%' .or. raw(i:i) == '=' &
          .or. raw(i:i) == ',') then
        enc = enc // '%' // hex(c / 16 + 1:c / 16 + 1) // hex(mod(c, 16) + 1:mod(c, 16) + 1)
      else
        enc = enc // raw(i:i)
      end if
    end do
  end function percent_encode

  subroutine percent_decode(enc, raw, ok)
    character(len=*), intent(in) :: enc
    character(len=:), allocatable, intent(out) :: raw
    logical, intent(out) :: ok
    integer :: i, hi, lo
    raw = ''
    ok = .true.
    i = 1
    do while (i <= len(enc))
      if (enc(i:i) == '%') then
        if (i + 2 > len(enc)) then
          ok = .false.
          return
        end if
        hi = index('0123456789ABCDEF', enc(i + 1:i + 1)) - 1
        lo = index('0123456789ABCDEF', enc(i + 2:i + 2)) - 1
        if (hi < 0 .or. lo < 0) then
          ok = .false.
          return
        end if
        raw = raw // achar(16 * hi + lo)
        i = i + 3
      else
        raw = raw // enc(i:i)
        i = i + 1
      end if
    end do
  end subroutine percent_decode

  pure function real_text(x) result(text)
    !! The shortest decimal form of x that reads back to the same double, written as Python's
    !! repr writes it (0.2, 1e-05, 1.5e+20, 3.0), so that the engine and the Python writer give
    !! the same header text.
    real(real64), intent(in) :: x
    character(len=:), allocatable :: text
    character(len=40) :: buf
    character(len=:), allocatable :: digits
    real(real64) :: back
    integer :: d, ios, e, epos
    if (x /= x) then
      text = 'nan'
      return
    else if (x > huge(x)) then
      text = 'inf'
      return
    else if (x < -huge(x)) then
      text = '-inf'
      return
    else if (x == 0) then
      text = merge('-0.0', '0.0 ', sign(1.0_real64, x) < 0)
      text = trim(text)
      return
    end if
    ! Fewest significant digits that round-trip (at most 17 for a double).
    do d = 1, 17
      write (buf, '(es30.' // digit_text(d - 1) // 'e3)') abs(x)
      read (buf, *, iostat=ios) back
      if (ios == 0 .and. back == abs(x)) exit
    end do
    buf = adjustl(buf)
    epos = index(buf, 'E')
    read (buf(epos + 1:), *) e
    digits = buf(1:1) // buf(3:epos - 1)       ! mantissa digits without the point
    if (d == 1) digits = buf(1:1)
    do while (len(digits) > 1 .and. digits(len(digits):len(digits)) == '0')
      digits = digits(1:len(digits) - 1)
    end do
    if (e >= -4 .and. e < 16) then
      if (e < 0) then                           ! 0.000ddd
        text = '0.' // repeat('0', -e - 1) // digits
      else if (len(digits) <= e + 1) then       ! ddd00.0
        text = digits // repeat('0', e + 1 - len(digits)) // '.0'
      else                                      ! dd.ddd
        text = digits(1:e + 1) // '.' // digits(e + 2:)
      end if
    else                                        ! d.ddde+XX
      text = digits(1:1)
      if (len(digits) > 1) text = text // '.' // digits(2:)
      write (buf, '(i0)') abs(e)
      if (abs(e) < 10) buf = '0' // buf
      text = text // 'e' // merge('-', '+', e < 0) // trim(buf)
    end if
    if (x < 0) text = '-' // text
  contains
    pure function digit_text(k) result(t)
      integer, intent(in) :: k
      character(len=:), allocatable :: t
      character(len=4) :: b2
      write (b2, '(i0)') k
      t = trim(b2)
    end function digit_text
  end function real_text

  pure function int_text(i) result(text)
    integer(int64), intent(in) :: i
    character(len=:), allocatable :: text
    character(len=24) :: buf
    write (buf, '(i0)') i
    text = trim(buf)
  end function int_text

end module fkb_config
